"""Customers, consent links and the consent callback."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from tenants import forms, selectors, services

NEW_LINK_SESSION_KEY = "new_consent_link"


@login_required
def customer_list(request: HttpRequest) -> HttpResponse:
    customers = selectors.list_customers(user=request.user)
    return render(request, "tenants/customer_list.html", {"customers": customers})


@login_required
def customer_add(request: HttpRequest) -> HttpResponse:
    form = forms.CustomerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        customer = services.add_customer(actor=request.user, **form.cleaned_data)
        messages.success(request, f"Added {customer.name}.")
        return redirect("tenants:customer_detail", code=customer.code)
    return render(request, "tenants/customer_form.html", {"form": form})


@never_cache
@login_required
def customer_detail(request: HttpRequest, code) -> HttpResponse:
    customer = selectors.get_customer(user=request.user, code=code)
    context = selectors.customer_overview(customer=customer)
    # A new link's URL is shown once, right after it was created, and never stored.
    new_link = request.session.pop(NEW_LINK_SESSION_KEY, None)
    if new_link and new_link["customer"] == str(customer.code):
        context["new_link_url"] = new_link["url"]
    return render(request, "tenants/customer_detail.html", context)


@require_POST
@login_required
def consent_link_create(request: HttpRequest, code) -> HttpResponse:
    customer = selectors.get_customer(user=request.user, code=code)
    _, url = services.create_consent_link(actor=request.user, customer=customer)
    request.session[NEW_LINK_SESSION_KEY] = {"customer": str(customer.code), "url": url}
    return redirect("tenants:customer_detail", code=customer.code)


@require_POST
@login_required
def consent_link_withdraw(request: HttpRequest, code, link_code) -> HttpResponse:
    customer = selectors.get_customer(user=request.user, code=code)
    link = selectors.get_consent_link(customer=customer, code=link_code)
    services.withdraw_consent_link(actor=request.user, link=link)
    messages.success(request, "The consent link was withdrawn; it no longer works.")
    return redirect("tenants:customer_detail", code=customer.code)


@require_POST
@login_required
def tenant_reverify(request: HttpRequest, code) -> HttpResponse:
    tenant = selectors.get_tenant(user=request.user, code=code)
    services.request_reverification(actor=request.user, tenant=tenant)
    messages.success(request, f"Checking access to {tenant} again.")
    return redirect("tenants:customer_detail", code=tenant.customer.code)


@never_cache
@require_GET
def consent_callback(request: HttpRequest) -> HttpResponse:
    """Where Microsoft sends the customer's admin back; anonymous by nature."""
    params = {key: request.GET.get(key, "")[:2048] for key in request.GET}
    try:
        result = services.record_consent_callback(
            params=params, remote_addr=request.META.get("REMOTE_ADDR")
        )
    except services.CallbackRejected as rejected:
        return render(
            request,
            "tenants/consent_rejected.html",
            {"message": rejected.public_message},
            status=400,
        )
    if result.outcome == "consented":
        return redirect("tenants:consent_status", link_code=result.link.code)
    return render(request, "tenants/consent_result.html", {"result": result})


@never_cache
@require_GET
def consent_status(request: HttpRequest, link_code) -> HttpResponse:
    """Progress of one consent, for the admin who gave it; nothing about anyone else."""
    context = selectors.get_consent_progress(link_code=link_code)
    return render(request, "tenants/consent_status.html", context)
