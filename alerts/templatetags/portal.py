"""Template helpers for the dashboard: safe portal links, URL state, compact times,
the queue's table, menus and severity facets."""

import functools
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from django import template
from django.conf import settings
from django.template import Template
from django.template.loader import render_to_string
from django.utils import timezone

from alerts import columns

register = template.Library()

# Only these become links; anything else in a payload is shown as text.
PORTAL_HOSTS = ("security.microsoft.com",)
PORTAL_HOST_SUFFIXES = (".portal.cloudappsecurity.com",)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port


@register.filter
def portal_link(url) -> str:
    """`url` if it points at a Microsoft portal (security.microsoft.com, the configured
    MS_SECURITY_PORTAL_URL, a Cloud Apps portal; in demo the emulator), else ""."""
    if not isinstance(url, str) or not url or any(c in url for c in "\\\r\n\t "):
        return ""
    try:
        scheme, host, port = _origin(url)
    except ValueError:
        return ""
    if scheme != "https" or not host:
        return ""
    configured = getattr(settings, "MS_SECURITY_PORTAL_URL", "")
    hosts = (*PORTAL_HOSTS, _origin(configured)[1]) if configured else PORTAL_HOSTS
    if port in (None, 443) and (host in hosts or host.endswith(PORTAL_HOST_SUFFIXES)):
        return url
    if settings.MS_EMULATOR and _origin(settings.MS_LOGIN_URL) == (scheme, host, port):
        return url
    return ""


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with `changes` applied (None removes a key); a new
    filter always starts again at the first page."""
    params = context["request"].GET.copy()
    params.pop("after", None)
    for key, value in changes.items():
        params.pop(key, None)
        if value not in (None, ""):
            params[key] = value
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.simple_tag(takes_context=True)
def query_toggle(context, key: str, value: str) -> str:
    """The current query string with `value` added to or removed from list `key`."""
    params = context["request"].GET.copy()
    params.pop("after", None)
    values = params.getlist(key)
    values = [v for v in values if v != value] if value in values else [*values, value]
    params.setlist(key, values)
    encoded = params.urlencode()
    return f"?{encoded}" if encoded else "?"


@register.filter
def age(moment) -> str:
    """A compact age for dense tables: 45s, 12m, 5h, 3d, 8w."""
    return columns.compact_age(moment, timezone.now())


@register.filter
def pretty_json(value) -> str:
    """Indented JSON text (the template escapes it like any other text)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@register.filter
def evidence_extra(row) -> list[tuple[str, str]]:
    """An evidence row's fields besides type, name and detail, for a compact column."""
    if not isinstance(row, dict):
        return []
    skip = {"type", "name", "detail"}
    return [
        (str(k), v if isinstance(v, str) else json.dumps(v, default=str))
        for k, v in row.items()
        if k not in skip and v not in (None, "", [], {})
    ]


@register.filter
def get_type(row) -> str:
    return str(row.get("type", "")) if isinstance(row, dict) else ""


@register.filter
def get_field(row, key: str) -> str:
    if not isinstance(row, dict):
        return ""
    value = row.get(key)
    return "" if value is None else str(value)


@register.filter
def humanize_value(value) -> str:
    """snake_case and camelCase enum values as words: true_positive -> True positive."""
    if not isinstance(value, str) or not value:
        return "—"
    words = value.replace("_", " ")
    spaced = "".join(f" {c.lower()}" if c.isupper() else c for c in words).strip()
    return spaced[:1].upper() + spaced[1:]


@register.simple_tag
def choice_options(choices, selected) -> str:
    """<option>s for (value, label) pairs, with those in `selected` (one value, or a
    list for a multiple choice) selected. No value ("" or None) selects nothing;
    the browser shows the first option."""
    if isinstance(selected, list | tuple):
        chosen = frozenset(str(value) for value in selected)
    else:
        chosen = frozenset({str(selected)} if selected not in (None, "") else ())
    return _options(tuple((str(value), str(label)) for value, label in choices), chosen)


@functools.lru_cache(maxsize=64)
def _options(choices: tuple[tuple[str, str], ...], chosen: frozenset[str]) -> str:
    """The rendered <option>s, kept per (choices, selected) in this process: a menu
    of a thousand customers through the template engine costs several milliseconds,
    on every queue page, and its contents change far less often than that."""
    return render_to_string(
        "alerts/partials/choice_options.html",
        {"options": [(value, label, value in chosen) for value, label in choices]},
    )


@dataclass(frozen=True)
class QueueTable:
    """The queue table's columns (alerts.columns.TABLE_COLUMNS) and their cells as
    one template that reads `row`."""

    columns: tuple[columns.Column, ...]
    cells: Template


@functools.cache
def _queue_table() -> QueueTable:
    cells = "".join(column.cell for column in columns.TABLE_COLUMNS)
    return QueueTable(columns=columns.TABLE_COLUMNS, cells=Template(cells))


@register.simple_tag
def queue_table() -> QueueTable:
    """The queue's table as declared in alerts.columns: `{% queue_table as table %}`,
    then a header per `table.columns` and `{% queue_row row %}` per row."""
    return _queue_table()


@register.simple_tag
def queue_row(row) -> str:
    """One <tr> of the queue (alerts/partials/queue_row.html with the declared cells)
    for a `queue.QueueRow`."""
    return _queue_row(row)


@functools.lru_cache(maxsize=4096)
def _queue_row(row) -> str:
    """A row's HTML depends on its values alone (the cells read `row` and nothing
    else), so each is rendered once per process while it stays the same: the queue
    is polled every 15 s by every analyst, and its rows through the template engine
    cost more than the rest of the page."""
    return render_to_string(
        "alerts/partials/queue_row.html", {"row": row, "cells": _queue_table().cells}
    )


@register.inclusion_tag("alerts/partials/severity_facets.html", takes_context=True)
def severity_facets(context, counts) -> dict:
    """The severity facets (queue.SeverityCount): each a link that adds its
    severity to the filter or removes it."""
    return {
        "facets": [
            (count, query_toggle(context, "severity", count.severity))
            for count in counts
        ]
    }
