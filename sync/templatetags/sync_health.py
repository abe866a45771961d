"""What the sync knows, for pages of other apps: the queue's banner of tenants that
may be missing alerts and the overview's tenants needing attention. Pages compose it
here, in the template, so the alerts app never imports the sync app."""

from django import template

from sync import selectors

register = template.Library()


@register.inclusion_tag("sync/partials/stale_tenants.html", takes_context=True)
def stale_tenants_banner(context, scope: str, customer=None) -> dict:
    """Tenants whose alerts may be missing from the queue (shared for a few seconds
    by the requests of one scope), for the queue's banner."""
    rows, total = selectors.shared_stale_tenants(
        user=context["request"].user, scope=scope, customer=customer
    )
    return {"stale": rows, "stale_total": total}


@register.inclusion_tag("sync/partials/attention.html", takes_context=True)
def tenants_needing_attention(context, limit: int = 10) -> dict:
    """The overview's card of tenants that are not verified, stale or failing."""
    rows, total = selectors.list_stale_tenants(
        user=context["request"].user, limit=limit
    )
    return {"attention": rows, "attention_total": total}
