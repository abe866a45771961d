"""The queue's columns as declared in alerts.columns: the table's header and cells and
the CSV export follow the declaration, in its order, and hostile text stays text.

The expected cells are keyed by column name and checked against the declaration, so
a column added there fails these tests until its cells are written down here."""

import csv
import io
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from alerts import columns, keyset, queue
from alerts.models import Alert, AlertStatus, Severity
from tests.factories import AlertFactory, CustomerFactory, TenantFactory, UserFactory

pytestmark = pytest.mark.django_db
HOSTILE = '<script>alert("x")</script> it\'s <b>bold</b> & "quoted"'


class QueueTable(HTMLParser):
    """The queue table's header texts and classes and each body row's cell texts
    (entities decoded, as a browser shows them), and the <option>s of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[tuple[str, str]] = []  # (text, class)
        self.rows: dict[str, list[str]] = {}  # data-alert -> cell texts
        self.options: list[tuple[str, str]] = []  # (value, label)
        self._in_table = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._option: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "queue-table":
            self._in_table = True
        elif self._in_table and tag == "tr" and "data-alert" in attrs:
            self._row = self.rows.setdefault(attrs["data-alert"], [])
        elif self._in_table and tag in ("th", "td"):
            self._cell = []
            self._cell_class = attrs.get("class") or ""
        elif tag == "option":
            self._option = attrs.get("value")
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._in_table = False
        elif self._in_table and tag == "th":
            self.headers.append(("".join(self._cell), self._cell_class))
        elif self._in_table and tag == "td" and self._row is not None:
            self._row.append("".join(self._cell))
        elif tag == "tr":
            self._row = None
        elif tag == "option" and self._option is not None:
            self.options.append((self._option, "".join(self._cell)))
            self._option = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(body: str) -> QueueTable:
    table = QueueTable()
    table.feed(body)
    return table


@pytest.fixture
def analyst():
    return UserFactory(username="ana")


@pytest.fixture
def known(analyst):
    """One alert of every cell's kind, with hostile text where staff see text."""
    customer = CustomerFactory(name=HOSTILE, staff=[analyst])
    tenant = TenantFactory(customer=customer, display_name="contoso.example")
    now = timezone.now()
    return AlertFactory(
        tenant=tenant,
        title=HOSTILE,
        severity=Severity.HIGH,
        status=AlertStatus.IN_PROGRESS,
        source=Alert.Source.MCAS,
        category="Initial <access>",
        assigned_to="bob@mssp.example",
        provider_id="=cmd|' /C calc'!A0",
        created_at_source=now - timedelta(days=3, hours=2),
        updated_at_source=now - timedelta(hours=1),
    )


def expected_cells(alert) -> dict[str, str]:
    created = timezone.localtime(alert.created_at_source)
    updated = timezone.localtime(alert.updated_at_source)
    return {
        "severity": "High",
        "status": "In progress",
        "title": HOSTILE,
        "customer": HOSTILE,
        "tenant": "contoso.example",
        "source": "Defender for Cloud Apps",
        "category": "Initial <access>",
        "assigned_to": "bob@mssp.example",
        "created": f"{created:%m-%d %H:%M}",
        "updated": f"{updated:%m-%d %H:%M:%S}",
        "age": "3d",
    }


def expected_csv(alert) -> dict[str, str]:
    return {
        "severity": "high",
        "status": "in_progress",
        "title": HOSTILE,
        "customer": HOSTILE,
        "tenant": "contoso.example",
        "source": "mcas",
        "category": "Initial <access>",
        "assigned_to": "bob@mssp.example",
        "created": timezone.localtime(alert.created_at_source).isoformat(),
        "last_updated": timezone.localtime(alert.updated_at_source).isoformat(),
        "provider_id": "'=cmd|' /C calc'!A0",  # a formula, defused
    }


def test_the_table_shows_each_declared_column_in_order(client, analyst, known):
    """Header and cells of the table are the declaration's, in its order."""
    client.force_login(analyst)
    body = client.get(reverse("alerts:queue")).content.decode()
    table = parse(body)
    declared = columns.TABLE_COLUMNS
    assert table.headers == [
        (column.header, column.header_class) for column in declared
    ]
    expected = expected_cells(known)
    assert set(expected) == {column.name for column in declared}, (
        "a column was added or removed: write down its expected cell here"
    )
    assert table.rows[str(known.code)] == [expected[c.name] for c in declared]
    # The link to the alert is in the title cell, its severity on the row.
    assert f'<a href="/alerts/{known.code}">' in body
    assert f'<tr class="row-sev-high" data-alert="{known.code}">' in body


def test_every_row_has_a_cell_per_header(client, analyst, known):
    """Header and rows cannot get out of step, whatever the alerts hold (an empty
    title, no creation time, no category, a tenant without a name)."""
    tenant = TenantFactory(customer=known.tenant.customer, display_name="")
    AlertFactory(tenant=tenant, title="", category="", created_at_source=None)
    AlertFactory(tenant=tenant, severity=Severity.UNKNOWN, status=AlertStatus.RESOLVED)
    client.force_login(analyst)
    table = parse(client.get(reverse("alerts:queue")).content.decode())
    assert len(table.rows) == 3
    for cells in table.rows.values():
        assert len(cells) == len(table.headers)
    nothing = client.get(reverse("alerts:queue") + "?q=nothingmatches")
    assert parse(nothing.content.decode()).rows == {}
    assert (
        f'<td colspan="{len(table.headers)}" class="empty">' in nothing.content.decode()
    )


def test_empty_values_show_as_the_table_always_did(client, analyst, known):
    tenant = TenantFactory(customer=known.tenant.customer, display_name="")
    bare = AlertFactory(tenant=tenant, title="", category="", created_at_source=None)
    client.force_login(analyst)
    cells = dict(
        zip(
            [c.name for c in columns.TABLE_COLUMNS],
            parse(client.get(reverse("alerts:queue")).content.decode()).rows[
                str(bare.code)
            ],
            strict=True,
        )
    )
    assert cells["title"] == "(no title)"
    assert cells["category"] == cells["assigned_to"] == cells["created"] == "—"
    assert cells["tenant"] == str(tenant.tenant_id)


def test_hostile_text_in_cells_and_menus_stays_text(client, analyst, known):
    client.force_login(analyst)
    body = client.get(reverse("alerts:queue")).content.decode()
    assert "<script>" not in body
    assert "<b>bold</b>" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; it&#x27;s" in body
    assert "Initial &lt;access&gt;" in body
    menu = parse(body).options
    assert (str(known.tenant.customer.code), HOSTILE) in menu
    # The sort menu is the declared sorts', the default first.
    labels = [label for _value, label in menu]
    assert labels[-len(queue.QUEUE_SORTS) :] == list(queue.QUEUE_SORTS.values())


def test_csv_export_has_the_declared_columns(client, analyst, known):
    client.force_login(analyst)
    response = client.get(reverse("alerts:queue_export"))
    header, *rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert header == [column.csv for column in columns.CSV_COLUMNS]
    expected = expected_csv(known)
    assert set(expected) == set(header), (
        "a column was added to or removed from the export: write down its value here"
    )
    assert rows == [[expected[name] for name in header]]


def test_every_sort_belongs_to_a_column_and_has_a_keyset():
    declared = [name for column in columns.COLUMNS for name, _ in column.sorts]
    assert sorted(declared) == sorted(queue.QUEUE_SORTS) == sorted(keyset.SORT_KEYS)
    assert next(iter(queue.QUEUE_SORTS)) == columns.DEFAULT_SORT


def test_a_column_needs_a_cell_for_its_header_and_an_export_for_its_csv_name():
    with pytest.raises(ValueError, match="cell"):
        columns.Column("x", header="X")
    with pytest.raises(ValueError, match="export"):
        columns.Column("x", csv="x")
