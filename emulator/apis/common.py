"""Shared pieces of the emulated APIs: the per-request ``Call``, error shapes, paging
and the neutral evidence list each API maps into its own shape."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from werkzeug.wrappers import Request, Response

from emulator import streams
from emulator.encoding import encode
from emulator.odata import Filter

JSON_TYPES = {
    "mde": "application/json; odata.metadata=minimal; odata.streaming=true; "
    "charset=utf-8",
    "graph": "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8",
    "mcas": "application/json",
}

MDE_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
GRAPH_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "generalException",
    502: "BadGateway",
    503: "serviceNotAvailable",
    504: "GatewayTimeout",
}


class ApiError(Exception):
    """Raised by handlers; rendered in the API's own error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.body = body


@dataclass
class Call:
    """One API request: who is calling, for which tenant, in which error style."""

    world: Any
    request: Request
    style: str  # "mde" (MDE and XDR), "graph", "mcas"
    api: str = ""  # quota/statistics key: mde xdr hunting graph mcas
    tenant: Any = None
    claims: dict | None = None
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def stream(self) -> streams.TenantStream:
        return self.world.stream(self.tenant.id)

    @property
    def now_us(self) -> int:
        return self.world.now_us()

    @property
    def actor(self) -> str:
        """Who a comment or change is attributed to."""
        claims = self.claims or {}
        return (
            claims.get("upn")
            or claims.get("app_displayname")
            or claims.get("appid")
            or "API"
        )

    # -- responses -----------------------------------------------------------------
    def headers(self) -> dict[str, str]:
        if self.style == "graph":
            return {
                "request-id": self.request_id,
                "client-request-id": self.request.headers.get(
                    "client-request-id", self.request_id
                ),
            }
        if self.style == "mde":
            return {"x-correlation-id": self.request_id}
        return {}

    def json(
        self, body: Any, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        response = Response(
            encode(body), status=status, content_type=JSON_TYPES[self.style]
        )
        for k, v in {**self.headers(), **(headers or {})}.items():
            response.headers[k] = v
        return response

    def error(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        return self.json(self.error_body(status, message, code), status, headers)

    def error_body(self, status: int, message: str, code: str | None = None) -> Any:
        if self.style == "graph":
            code = code or GRAPH_CODES.get(status, "UnknownError")
            date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
            return {
                "error": {
                    "code": code,
                    "message": message,
                    "innerError": {
                        "date": date,
                        "request-id": self.request_id,
                        "client-request-id": self.request.headers.get(
                            "client-request-id", self.request_id
                        ),
                    },
                }
            }
        if self.style == "mcas":
            if status == 400 and code == "filters":
                return {
                    "filters": [
                        {
                            "error": message,
                            "errorMessageCode": "CONSOLE_FORMS_NOT_VALID_VALUE",
                            "errorMessageParams": {"value": message.split(" ")[0]},
                        }
                    ],
                    "error": True,
                }
            return {"detail": message}
        code = code or MDE_CODES.get(status, "BadRequest")
        return {"error": {"code": code, "message": message, "target": self.request_id}}

    def body_json(self) -> Any:
        """The JSON request body (``{}`` when empty); 400 when it is not JSON."""
        raw = self.request.get_data(cache=True)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError(
                400,
                "Request body is incorrect",
                "InvalidRequestBody" if self.style == "mde" else None,
            ) from exc


# -- paging -------------------------------------------------------------------------


@dataclass
class Page:
    rows: list
    has_more: bool
    total: int | None = None


def page_index(
    st: streams.TenantStream,
    keys: streams.SortedKeys,
    items: list,
    flt: Filter | None,
    sort_prop: str,
    getters: dict[str, Callable[[Any], Any]],
    skip: int,
    top: int,
    newest_first: bool = False,
    want_total: bool = False,
) -> Page:
    """A page of ``items`` (indexed by ``keys`` on ``sort_prop``) matching ``flt``.

    Bounds on ``sort_prop`` in top-level ``and`` terms become a bisect; only the rest
    of the filter is evaluated row by row, so a cursor query costs O(log n + page).
    """
    rest: Filter | None = None
    lo = hi = None
    lo_incl = hi_incl = True
    if flt is not None:
        rng, rest = flt.range_for(sort_prop)
        lo, lo_incl, hi, hi_incl = rng.lo, rng.lo_incl, rng.hi, rng.hi_incl
    bounds = {"lo": lo, "lo_incl": lo_incl, "hi": hi, "hi_incl": hi_incl}
    if rest is None:
        rows = st.slice_range(
            keys, items, skip, top + 1, newest_first=newest_first, **bounds
        )
        total = st.count_range(keys, **bounds) if want_total else None
        return Page(rows[:top], len(rows) > top, total)

    def ok(obj: Any) -> bool:
        return rest.matches(lambda p: getters[p](obj))

    matching = (
        obj
        for obj in st.iter_index(keys, items, newest_first=newest_first, **bounds)
        if ok(obj)
    )
    if want_total:
        everything = list(matching)
        rows = everything[skip : skip + top + 1]
        return Page(rows[:top], len(rows) > top, len(everything))
    rows = list(islice(matching, skip, skip + top + 1))
    return Page(rows[:top], len(rows) > top)


# -- neutral evidence ------------------------------------------------------------------


def evidence(alert: streams.Alert) -> list[dict[str, Any]]:
    """The alert's evidence as neutral dicts (``kind`` + details), deterministic."""
    d = alert.details()
    kinds = alert.evidence_kinds()
    m = alert.machine()
    out: list[dict[str, Any]] = []
    at = alert.created
    if m is not None:
        out.append({"kind": "Device", "machine": m, "at": at})
    for kind in kinds:
        out.append(dict(d, kind=kind, at=at))
    return out
