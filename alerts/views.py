"""The dashboard: overview, the unified queue and its export, alert detail with
triage, incidents."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from alerts import exports, forms, queue, selectors, triage
from tenants import selectors as tenant_selectors


def _is_htmx(request: HttpRequest) -> bool:
    return request.headers.get("HX-Request") == "true"


@never_cache
@require_GET
@login_required
def queue_page(request: HttpRequest) -> HttpResponse:
    """The unified alert queue; htmx polls the same URL for fresh results."""
    form = forms.QueueFilterForm(request.GET)
    partial = "alerts/partials/queue_results.html"
    if not form.is_valid():
        template = partial if _is_htmx(request) else "alerts/queue.html"
        return render(request, template, {"form": form}, status=400)
    page = queue.list_queue(user=request.user, filters=form.cleaned_data)
    context = {"form": form, "page": page}
    if _is_htmx(request):  # the 15-second poll: the results only
        return render(request, partial, context)
    context["customers"] = tenant_selectors.list_customer_choices(
        user=request.user, scope=page.scope
    )
    context["sorts"] = queue.QUEUE_SORTS
    context["ranges"] = queue.QUEUE_RANGES
    return render(request, "alerts/queue.html", context)


@never_cache
@require_GET
@login_required
def queue_export(request: HttpRequest) -> HttpResponse:
    """The queue's current filter as CSV (at most 10,000 rows)."""
    form = forms.QueueFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponseBadRequest("Bad filter: " + "; ".join(form.errors))
    alerts = queue.export_queue(user=request.user, filters=form.cleaned_data)
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
        return render(request, "alerts/partials/triage_actions.html", context)
    context = selectors.alert_detail(alert=alert)
    context["triage_form"] = forms.TriageForm(
        initial={"based_on": alert.updated_at_source.isoformat()},
        user=request.user,
        assignees=context["assignees"],
    )
    return render(request, "alerts/alert_detail.html", context)


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
        return render(request, "alerts/alert_detail.html", context, status=400)
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
    return redirect("alerts:alert_detail", code=alert.code)


@never_cache
@require_GET
@login_required
def incident_list(request: HttpRequest) -> HttpResponse:
    open_only = request.GET.get("all") != "1"
    incidents = selectors.list_incidents(user=request.user, open_only=open_only)
    context = {"incidents": incidents, "open_only": open_only}
    return render(request, "alerts/incident_list.html", context)


@never_cache
@require_GET
@login_required
def incident_detail(request: HttpRequest, code) -> HttpResponse:
    incident = selectors.get_incident(user=request.user, code=code)
    context = selectors.incident_detail(incident=incident)
    return render(request, "alerts/incident_detail.html", context)


@never_cache
@require_GET
@login_required
def overview(request: HttpRequest) -> HttpResponse:
    context = selectors.overview(user=request.user)
    return render(request, "alerts/overview.html", context)
