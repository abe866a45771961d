from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from tenants import exports, forms, selectors, services, triage

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


# --- The dashboard --------------------------------------------------------------------


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@never_cache
@require_GET
@login_required
def queue(request: HttpRequest) -> HttpResponse:
    """The unified alert queue; htmx polls the same URL for fresh results."""
    form = forms.QueueFilterForm(request.GET)
    partial = "tenants/partials/queue_results.html"
    if not form.is_valid():
        template = partial if _is_htmx(request) else "tenants/queue.html"
        return render(request, template, {"form": form}, status=400)
    page = selectors.list_queue(user=request.user, filters=form.cleaned_data)
    context = {"form": form, "page": page}
    if _is_htmx(request):  # the 15-second poll: the results only
        return render(request, partial, context)
    context["customers"] = selectors.list_customer_choices(
        user=request.user, scope=page.scope
    )
    context["sorts"] = forms.QUEUE_SORTS
    context["ranges"] = forms.QUEUE_RANGES
    return render(request, "tenants/queue.html", context)


@never_cache
@require_GET
@login_required
def queue_export(request: HttpRequest) -> HttpResponse:
    """The queue's current filter as CSV (at most 10,000 rows)."""
    form = forms.QueueFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("Bad filter: " + "; ".join(form.errors))
    alerts = selectors.export_queue(user=request.user, filters=form.cleaned_data)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="alert-queue.csv"'
    exports.write_queue_csv(response, alerts)
    return response


@never_cache
@require_GET
@login_required
def alert_detail(request: HttpRequest, code) -> HttpResponse:
    """One alert; htmx polls the same URL for the triage results."""
    alert = selectors.get_alert(user=request.user, code=code)
    if _is_htmx(request):
        context = {"alert": alert, **selectors.triage_state(alert=alert)}
        return render(request, "tenants/partials/triage_actions.html", context)
    context = selectors.alert_detail(alert=alert)
    context["triage_form"] = forms.TriageForm(
        initial={"based_on": alert.updated_at_source.isoformat()},
        user=request.user,
        assignees=context["assignees"],
    )
    return render(request, "tenants/alert_detail.html", context)


@require_POST
@login_required
def alert_triage(request: HttpRequest, code) -> HttpResponse:
    alert = selectors.get_alert(user=request.user, code=code)
    context = selectors.alert_detail(alert=alert)
    form = forms.TriageForm(
        request.POST, user=request.user, assignees=context["assignees"]
    )
    if not form.is_valid():
        context["triage_form"] = form
        return render(request, "tenants/alert_detail.html", context, status=400)
    try:
        triage.request_triage(
            actor=request.user,
            alert=alert,
            based_on_updated_at=form.cleaned_data["based_on"],
            changes=form.cleaned_data["changes"],
            comment=form.cleaned_data["comment"],
        )
    except triage.TriageRefused as refused:
        messages.error(request, str(refused))
    else:
        messages.success(request, "Sent to Defender; the result shows below.")
    return redirect("tenants:alert_detail", code=alert.code)


@never_cache
@require_GET
@login_required
def incident_list(request: HttpRequest) -> HttpResponse:
    open_only = request.GET.get("all") != "1"
    incidents = selectors.list_incidents(user=request.user, open_only=open_only)
    context = {"incidents": incidents, "open_only": open_only}
    return render(request, "tenants/incident_list.html", context)


@never_cache
@require_GET
@login_required
def incident_detail(request: HttpRequest, code) -> HttpResponse:
    incident = selectors.get_incident(user=request.user, code=code)
    context = selectors.incident_detail(incident=incident)
    return render(request, "tenants/incident_detail.html", context)


@never_cache
@require_GET
@login_required
def tenant_health(request: HttpRequest) -> HttpResponse:
    rows = selectors.tenant_health(user=request.user)
    return render(
        request,
        "tenants/tenant_health.html",
        {"rows": rows, "halted": selectors.HALTED},
    )


@never_cache
@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    context = selectors.overview(user=request.user)
    return render(request, "tenants/overview.html", context)
