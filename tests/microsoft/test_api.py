"""API calls: paging, write-back, probes, faults and throttling, over real HTTPS."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emulator import tls
from emulator.server import EmulatorServer
from emulator.testing import run_emulator
from tenants.microsoft import sources
from tenants.microsoft.client import MicrosoftClient
from tenants.microsoft.schemas import (
    AccessDenied,
    ConsentRevoked,
    MicrosoftError,
    NotFound,
    NotLicensed,
    Throttled,
    Unavailable,
    UntrustedUrl,
)
from tests.microsoft.conftest import requests_to, token_requests

LONG_AGO = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def quiet_emu(emulator_state_dir: Path):
    """An emulator whose streams do not grow while a test pages through them."""
    with run_emulator(
        emulator_state_dir, tenants=2, consented=True, alerts_per_minute=0
    ) as running:
        yield running


@pytest.fixture
def quiet(quiet_emu, make_client_for) -> tuple:
    client = make_client_for(quiet_emu)
    first = quiet_emu.description["tenants"][0]["id"]
    return quiet_emu, client, first


@pytest.fixture
def make_client_for(client_options: dict) -> Iterator[Callable[..., MicrosoftClient]]:
    made: list[MicrosoftClient] = []

    def build(running, **overrides) -> MicrosoftClient:
        options = dict(
            client_options,
            client_id=running.client_id,
            client_secret=running.client_secret,
            login_url=running.base_url,
            defender_url=f"{running.base_url}/defender",
            graph_url=f"{running.base_url}/graph",
            ca_bundle=running.ca_path,
        )
        client = MicrosoftClient(**{**options, **overrides})
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def ground_truth(running, tenant_id: str, source: str) -> set[str]:
    result = running.control("GET", "ground-truth", tenant=tenant_id, source=source)
    return set(result["result"])


def set_faults(running, tenant_id: str, **profile) -> None:
    running.control("POST", "faults/api", {"tenant": tenant_id, "profile": profile})


class SideServer:
    """A real HTTPS server (the emulator's certificate) that answers with ``reply``
    and remembers every request it saw."""

    def __init__(self, state_dir: Path) -> None:
        files = tls.ensure_server_tls(state_dir)
        self.seen: list[dict] = []
        self.reply: Callable[[dict], tuple[str, list, bytes]] = lambda environ: (
            "200 OK",
            [("Content-Type", "application/json")],
            b'{"value": []}',
        )
        self.server = EmulatorServer(
            "127.0.0.1", 0, files.cert_path, files.key_path, app=self, threads=4
        )
        self.base_url = self.server.base_url

    def __call__(self, environ, start_response):
        self.seen.append(
            {
                "path": environ["PATH_INFO"],
                "authorization": environ.get("HTTP_AUTHORIZATION"),
            }
        )
        status, headers, body = self.reply(environ)
        start_response(status, headers)
        return [body]


@pytest.fixture
def side_server(emulator_state_dir: Path) -> Iterator[SideServer]:
    server = SideServer(emulator_state_dir)
    server.server.start()
    yield server
    server.server.stop()


# --- paging ---------------------------------------------------------------------------


def test_mde_alerts_page_with_skip_until_a_short_page(quiet):
    emu, client, tenant_id = quiet
    seen: list[dict] = []
    skip = 0
    for _ in range(100):
        page = client.list_mde_alerts(tenant_id, since=LONG_AGO, top=7, skip=skip)
        seen.extend(page.items)
        skip += len(page.items)
        if not page.has_more:
            break

    assert {a["id"] for a in seen} == ground_truth(emu, tenant_id, "mde")
    assert len(seen) > 7
    assert all("evidence" in a for a in seen)
    assert requests_to(emu, "/defender/api/alerts")[0]["status"] == 200


def test_mde_alerts_tolerate_a_next_link(quiet):
    emu, client, tenant_id = quiet
    emu.world.api_options["mde_next_link"] = "always"

    page = client.list_mde_alerts(tenant_id, since=LONG_AGO, top=3)

    assert len(page.items) == 3
    assert page.has_more
    assert page.next_link.startswith(f"{emu.base_url}/defender/api/alerts?")


def test_mde_alerts_since_filters_on_last_update(quiet):
    emu, client, tenant_id = quiet
    before = dt.datetime.fromtimestamp(emu.world.now(), dt.UTC)
    added = emu.control("POST", "alerts", {"tenant": tenant_id, "source": "mde"})

    page = client.list_mde_alerts(
        tenant_id, since=before - dt.timedelta(seconds=1), top=100
    )

    assert added["result"]["id"] in {a["id"] for a in page.items}
    assert len(page.items) < len(ground_truth(emu, tenant_id, "mde"))


@pytest.mark.parametrize("region", ["eu", "ina", "aea"])
def test_regional_defender_calls_go_to_the_region(quiet, region):
    emu, client, tenant_id = quiet

    page = client.list_mde_alerts(tenant_id, since=None, top=1, region=region)

    assert page.items
    assert requests_to(emu, f"/defender/{region}/api/alerts")


def test_xdr_calls_go_to_the_global_host_whatever_the_region(quiet):
    # Reference §7 documents no geo host for the XDR API.
    emu, client, tenant_id = quiet

    client.list_xdr_incidents(tenant_id, since=None, top=1, region="uk")

    assert [r["path"] for r in requests_to(emu, "/api/incidents")] == [
        "/defender/api/incidents"
    ]


def test_real_defender_regions_use_geo_hosts():
    client = MicrosoftClient(
        client_id="00001111-aaaa-2222-bbbb-3333cccc4444",
        client_secret="unused",
        login_url="https://login.microsoftonline.com",
        defender_url="https://api.security.microsoft.com",
        graph_url="https://graph.microsoft.com",
        ca_bundle=None,
        redis_url="redis://127.0.0.1:6379/0",
    )

    for geo in ("us", "eu", "uk", "au", "swa", "ina", "aea"):
        assert (
            client.defender_base(geo, api=sources.MDE)
            == f"https://{geo}.api.security.microsoft.com"
        )
        assert (
            client.defender_base(geo, api=sources.XDR)
            == "https://api.security.microsoft.com"
        )
    assert (
        client.defender_base(None, api=sources.MDE)
        == "https://api.security.microsoft.com"
    )
    with pytest.raises(ValueError, match="region"):
        client.defender_base("mars", api=sources.MDE)
    assert client.mcas_base("https://contoso.us2.portal.cloudappsecurity.com/") == (
        "https://contoso.us2.portal.cloudappsecurity.com"
    )
    with pytest.raises(UntrustedUrl):
        client.mcas_base("https://portal.cloudappsecurity.com.evil.example")
    client.close()


def test_xdr_incidents_page_with_skip(quiet):
    emu, client, tenant_id = quiet
    seen: list[dict] = []
    skip = 0
    for _ in range(100):
        page = client.list_xdr_incidents(tenant_id, since=LONG_AGO, top=5, skip=skip)
        seen.extend(page.items)
        skip += len(page.items)
        if not page.has_more:
            break

    assert {str(i["incidentId"]) for i in seen} == ground_truth(emu, tenant_id, "xdr")
    assert all(isinstance(i["alerts"], list) for i in seen)
    with pytest.raises(ValueError, match="100"):
        client.list_xdr_incidents(tenant_id, since=None, top=101)


def test_graph_alerts_follow_next_links(quiet):
    emu, client, tenant_id = quiet
    seen: list[dict] = []
    page = client.list_graph_alerts(tenant_id, since=LONG_AGO, top=10)
    seen.extend(page.items)
    for _ in range(100):
        if page.next_link is None:
            break
        page = client.list_graph_alerts(tenant_id, since=None, next_link=page.next_link)
        seen.extend(page.items)

    assert {a["id"] for a in seen} == ground_truth(emu, tenant_id, "graph")
    assert len(requests_to(emu, "/graph/v1.0/security/alerts_v2")) > 1


def test_graph_incidents_follow_next_links_with_alerts(quiet):
    emu, client, tenant_id = quiet
    seen: list[dict] = []
    next_link = None
    for _ in range(100):
        page = client.list_graph_incidents(
            tenant_id, since=LONG_AGO, top=10, next_link=next_link
        )
        seen.extend(page.items)
        next_link = page.next_link
        if next_link is None:
            break

    assert {i["id"] for i in seen} == ground_truth(emu, tenant_id, "graph_incidents")
    assert all(isinstance(i["alerts"], list) for i in seen)
    with pytest.raises(ValueError, match="50"):
        client.list_graph_incidents(tenant_id, since=None, top=51)


def test_mcas_alerts_page_with_skip_oldest_first(quiet):
    emu, client, tenant_id = quiet
    mcas_url = emu.world.tenants[tenant_id].mcas_url
    seen: list[dict] = []
    skip = 0
    for _ in range(100):
        page = client.list_mcas_alerts(
            tenant_id, mcas_url=mcas_url, since_ms=0, skip=skip, limit=4
        )
        seen.extend(page.items)
        skip += len(page.items)
        if not page.has_more:
            break

    assert {a["_id"] for a in seen} == ground_truth(emu, tenant_id, "mcas")
    stamps = [a["timestamp"] for a in seen]
    assert stamps == sorted(stamps)
    body = requests_to(emu, "/api/v1/alerts/", "POST")
    assert body and all(e["status"] == 200 for e in body)


# --- single items and write-back ------------------------------------------------------


def test_mde_alert_get_and_update(quiet):
    emu, client, tenant_id = quiet
    alert_id = client.list_mde_alerts(tenant_id, since=None, top=1).items[0]["id"]

    updated = client.update_mde_alert(
        tenant_id,
        alert_id,
        changes={"status": "InProgress", "comment": "Looking at it"},
    )

    assert updated["status"] == "InProgress"
    fetched = client.get_mde_alert(tenant_id, alert_id)
    assert fetched["status"] == "InProgress"
    assert any(c["comment"] == "Looking at it" for c in fetched["comments"])
    assert requests_to(emu, f"/api/alerts/{alert_id}", "PATCH")[0]["status"] == 200
    with pytest.raises(ValueError):
        client.update_mde_alert(tenant_id, alert_id, changes={"Status": "New"})


def test_graph_alert_get_and_update(quiet):
    emu, client, tenant_id = quiet
    alert_id = client.list_graph_alerts(tenant_id, since=None, top=1).items[0]["id"]

    updated = client.update_graph_alert(
        tenant_id, alert_id, changes={"status": "inProgress", "assignedTo": "soc@x"}
    )

    assert updated["status"] == "inProgress"
    assert client.get_graph_alert(tenant_id, alert_id)["assignedTo"] == "soc@x"


def test_unknown_alert_is_not_found(quiet):
    emu, client, tenant_id = quiet

    with pytest.raises(NotFound):
        client.get_mde_alert(tenant_id, "da000000000000000000_000")
    with pytest.raises(NotFound):
        client.get_graph_alert(tenant_id, "no-such-alert")


# --- probes and access errors ---------------------------------------------------------


def test_probe_proves_every_source(emu, tenant, make_client):
    client = make_client()

    for source in (
        "mde_alerts",
        "xdr_incidents",
        "graph_alerts",
        "graph_incidents",
        "mcas_alerts",
    ):
        client.probe(
            tenant["id"], source, mcas_url=tenant["mcas_url"], region=tenant["region"]
        )

    assert len(token_requests(emu, tenant["id"])) == 4  # graph token shared


def _remove_roles(emu, tenant_id: str, resource: str, roles: list[str]) -> None:
    for role in roles:
        emu.control(
            "POST",
            f"tenants/{tenant_id}/roles/remove",
            {"resource": resource, "role": role},
        )


def test_probe_names_the_missing_role(emu, tenant, make_client):
    _remove_roles(emu, tenant["id"], "mde", ["Alert.Read.All", "Alert.ReadWrite.All"])

    with pytest.raises(AccessDenied) as caught:
        make_client().probe(tenant["id"], "mde_alerts")

    assert caught.value.missing_roles == ["Alert.Read.All"]
    assert "Alert.Read.All" in caught.value.message
    assert requests_to(emu, "/api/alerts") == []  # the token already said it


def test_api_403_without_the_role_is_access_denied(emu, tenant, make_client):
    _remove_roles(emu, tenant["id"], "mcas", ["Investigation.read"])

    with pytest.raises(AccessDenied) as caught:
        make_client().list_mcas_alerts(
            tenant["id"], mcas_url=tenant["mcas_url"], since_ms=0
        )

    assert caught.value.status == 403
    assert caught.value.missing_roles == ["Investigation.read"]


def test_api_403_for_a_missing_licence_is_not_licensed(emu, tenant, make_client):
    client = make_client()
    client.get_token(tenant["id"], "mde_alerts")  # cached before the licence went
    emu.control("PATCH", f"tenants/{tenant['id']}", {"licensed": ["graph"]})

    with pytest.raises(NotLicensed) as caught:
        client.list_mde_alerts(tenant["id"], since=None, top=1)

    assert caught.value.status == 403
    assert "Defender for Endpoint" in caught.value.message


def test_api_401_refreshes_the_token_once(emu, tenant, make_client):
    client = make_client()
    set_faults(emu, tenant["id"], script=[{"kind": "401", "count": 1}])

    page = client.list_graph_alerts(tenant["id"], since=None, top=2)

    assert len(page.items) == 2
    assert len(token_requests(emu, tenant["id"])) == 2
    assert [e["status"] for e in requests_to(emu, "/security/alerts_v2")] == [401, 200]


def test_consent_revoked_after_the_token_was_cached(emu, tenant, make_client):
    client = make_client()
    client.list_mde_alerts(tenant["id"], since=None, top=1)
    emu.control("POST", f"tenants/{tenant['id']}/revoke")

    with pytest.raises(ConsentRevoked) as caught:
        client.list_mde_alerts(tenant["id"], since=None, top=1)

    assert caught.value.codes == (700016,)


# --- throttling and faults ------------------------------------------------------------


def test_429_is_throttled_with_retry_after_and_not_retried(emu, tenant, make_client):
    set_faults(emu, tenant["id"], retry_after=3, script=[{"kind": "429", "count": 1}])

    with pytest.raises(Throttled) as caught:
        make_client().list_xdr_incidents(tenant["id"], since=None, top=1)

    assert caught.value.retry_after == 3.0
    assert len(requests_to(emu, "/api/incidents")) == 1


def test_quota_exhaustion_is_throttled(emu, tenant, make_client):
    client = make_client()

    with pytest.raises(Throttled) as caught:
        for _ in range(40):  # Cloud Apps allows 30 calls a minute per tenant
            client.list_mcas_alerts(
                tenant["id"], mcas_url=tenant["mcas_url"], since_ms=0, limit=1
            )

    assert 0 < caught.value.retry_after <= 60
    assert len(requests_to(emu, "/api/v1/alerts/")) == 31


def test_5xx_is_retried_then_succeeds(emu, tenant, make_client):
    set_faults(emu, tenant["id"], retry_after=0, script=[{"kind": "503", "count": 1}])

    page = make_client().list_graph_alerts(tenant["id"], since=None, top=1)

    assert len(page.items) == 1
    assert [e["status"] for e in requests_to(emu, "/security/alerts_v2")] == [503, 200]


@pytest.mark.parametrize(
    "kind", ["500", "503", "504", "malformed", "truncated", "reset"]
)
def test_persistent_failure_is_unavailable_after_bounded_retries(
    emu, tenant, make_client, kind
):
    set_faults(emu, tenant["id"], retry_after=0, script=[{"kind": kind, "count": 10}])

    # A truncated body on a connection kept open ends with the read timeout.
    client = make_client(retries=2, timeout=(5, 1))

    with pytest.raises(Unavailable) as caught:
        client.list_mde_alerts(tenant["id"], since=None, top=2)

    assert caught.value.transient
    assert len(requests_to(emu, "/api/alerts")) == 3


def test_timeout_is_unavailable(emu, tenant, make_client):
    set_faults(
        emu,
        tenant["id"],
        timeout_seconds=1.0,
        script=[{"kind": "timeout", "count": 2}],
    )

    with pytest.raises(Unavailable, match="timed out"):
        make_client(timeout=(5, 0.3), retries=1).list_graph_alerts(
            tenant["id"], since=None, top=1
        )


def test_response_size_is_capped(emu, tenant, make_client):
    with pytest.raises(MicrosoftError, match="larger"):
        make_client(max_response_bytes=2000).list_mde_alerts(
            tenant["id"], since=None, top=50
        )


# --- where the bearer token may go ----------------------------------------------------


def test_next_link_to_another_host_is_refused(emu, tenant, make_client, side_server):
    client = make_client()
    emu.world.base_url = side_server.base_url  # Graph now builds links to it

    with pytest.raises(UntrustedUrl):
        client.list_graph_alerts(tenant["id"], since=None, top=1)
    with pytest.raises(UntrustedUrl):
        client.list_graph_alerts(
            tenant["id"],
            since=None,
            next_link=f"{side_server.base_url}/graph/v1.0/security/alerts_v2?$skip=1",
        )

    assert side_server.seen == []


def test_foreign_next_link_of_a_skip_paged_api_is_dropped(
    emu, tenant, make_client, side_server
):
    emu.world.api_options["mde_next_link"] = "always"
    emu.world.base_url = side_server.base_url

    page = make_client().list_mde_alerts(tenant["id"], since=None, top=2)

    assert len(page.items) == 2
    assert page.next_link is None
    assert page.has_more  # paging goes on with $skip on the configured host
    assert side_server.seen == []


def test_next_link_outside_the_api_path_is_refused(emu, tenant, make_client):
    client = make_client()

    with pytest.raises(UntrustedUrl):
        client.list_graph_alerts(
            tenant["id"], since=None, next_link=f"{emu.base_url}/_emulator/state"
        )
    with pytest.raises(UntrustedUrl):
        client.list_graph_alerts(
            tenant["id"],
            since=None,
            next_link=emu.base_url.replace("https://", "https://user@")
            + "/graph/v1.0/security/alerts_v2",
        )


def test_mcas_url_on_another_host_is_refused(emu, tenant, make_client, side_server):
    with pytest.raises(UntrustedUrl):
        make_client().list_mcas_alerts(
            tenant["id"], mcas_url=f"{side_server.base_url}/mcas/contoso1", since_ms=0
        )

    assert side_server.seen == []


def test_redirects_are_not_followed(emu, tenant, make_client, side_server):
    target = f"{emu.base_url}/graph/v1.0/security/alerts_v2"
    side_server.reply = lambda environ: (
        "302 Found",
        [("Location", target), ("Content-Type", "application/json")],
        b"{}",
    )
    client = make_client(graph_url=f"{side_server.base_url}/graph")

    with pytest.raises(MicrosoftError) as caught:
        client.list_graph_alerts(tenant["id"], since=None, top=1)

    assert caught.value.status == 302
    assert len(side_server.seen) == 1
    assert requests_to(emu, "/security/alerts_v2") == []


# --- secrets --------------------------------------------------------------------------


def test_no_token_or_secret_in_logs_or_errors_of_api_calls(
    emu, tenant, make_client, caplog
):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    set_faults(emu, tenant["id"], retry_after=0, script=[{"kind": "503", "count": 9}])
    errors: list[MicrosoftError] = []
    for call in (
        lambda: client.list_mde_alerts(tenant["id"], since=None, top=1),
        lambda: client.list_graph_alerts(
            tenant["id"], since=None, next_link="https://evil.example/x"
        ),
    ):
        with pytest.raises(MicrosoftError) as caught:
            call()
        errors.append(caught.value)
    token = client.get_token(tenant["id"], "mde_alerts")

    text = caplog.text + "".join(f"{e!s}{e!r}{json.dumps(e.to_dict())}" for e in errors)
    assert token.value not in text
    assert token.value.split(".")[2] not in text
    assert emu.client_secret not in text
    assert "retry 1 of 2" in caplog.text  # the log does say what happened
