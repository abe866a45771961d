"""Search words: an alert's and a search term's, made by one rule (alerts.search)."""

from __future__ import annotations

import importlib

import pytest
from django.db import connection

from alerts import search, storage
from alerts.models import Alert
from tests.factories import AlertFactory

BACKFILL = importlib.import_module(
    "tenants.migrations.0011_alert_search_words_from_the_portal"
).BACKFILL


def test_words_are_runs_of_letters_and_digits_lowercased():
    assert search.words("FIN-WS-01.corp CONTOSO\\svc_backup 10.0.0.5") == [
        "fin", "ws", "01", "corp", "contoso", "svc", "backup", "10", "0", "0", "5",
    ]  # fmt: skip
    assert search.words("-- ! --") == []


def test_a_document_numbers_every_word_and_keeps_a_hash_whole():
    # PostgreSQL's own parser read `82e6` as a number and cut the hash there.
    assert search.document("Scan of ws-01", "", "ws-01 82e6d1c6b8") == (
        "'scan':1 'of':2 'ws':3,5 '01':4,6 '82e6d1c6b8':7"
    )
    assert search.document("", "", "") == ""


@pytest.mark.django_db
def test_a_document_keeps_to_postgresqls_limits():
    long_word = "x" * 3000  # more than a lexeme may hold: left out
    assert search.document(long_word + " y", "", "") == "'y':2"
    longest = "x" * 2046
    assert search.document(longest, longest + "x", "") == f"'{longest}':1"
    many = search.document(" ".join(["w"] * 20000), "", "")
    positions = many.removeprefix("'w':").split(",")
    assert len(positions) == 256 and positions[-1] == "256"
    far = search.document(" ".join(f"w{i}" for i in range(16390)), "", "")
    # Every word past the last position takes the last position.
    assert far.split()[-9:] == ["'w16381':16382"] + [
        f"'w{i}':16383" for i in range(16382, 16390)
    ]
    with connection.cursor() as cursor:  # PostgreSQL takes them as they are
        cursor.execute(
            "SELECT %s::tsvector, %s::tsvector, %s::tsvector",
            [many, far, search.document(longest, longest + "x", "")],
        )


@pytest.mark.django_db
def test_the_sync_writes_the_same_document_in_binary_form():
    texts = [
        ("Scan of ws-01", "", "ws-01 82e6d1c6b8"),
        ("", "", ""),
        ("b a b a c", "", ""),  # words first met out of order: PostgreSQL sorts them
        ("Müller in Zürich: 東京 office", "Straße", "ÆØÅ"),
        ("x" * 3000 + " y", "x" * 2046, "x" * 2047),
        (" ".join(["w"] * 20000), "", ""),
        (" ".join(f"w{i}" for i in range(16390)), "", ""),
    ]
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE vectors (n int, vector tsvector)")
        storage._copy_in(
            cursor.cursor,
            "vectors",
            [("n", "int4"), ("vector", "tsvector")],
            ([n, search.document_bytes(*t)] for n, t in enumerate(texts)),
        )
        stored = []
        for n, t in enumerate(texts):
            cursor.execute(
                "SELECT vector::text, %s::tsvector::text FROM vectors WHERE n = %s",
                [search.document(*t), n],
            )
            stored.append(cursor.fetchone())
    assert stored[0][0] == "'01':4,6 '82e6d1c6b8':7 'of':2 'scan':1 'ws':3,5"
    assert "'müller':1" in stored[3][0] and "'東京':4" in stored[3][0]
    assert stored[5][0] == "'w':" + ",".join(str(n) for n in range(1, 257))
    for binary, text in stored:
        assert binary == text


def test_a_term_is_its_words_in_a_row_the_last_also_a_word_start():
    assert search.phrase("WS-012") == "'ws' <-> '012':*"
    assert search.phrase("10.0.0.1") == "'10' <-> '0' <-> '0' <-> '1'"
    assert search.phrase("...") == ""
    assert search.every_word("ws-0017.corp", lambda w: w != "ws") == (
        "'0017' & 'corp':*"
    )


@pytest.mark.django_db
def test_the_migrations_backfill_gives_the_words_the_portal_gives():
    texts = [
        ("Suspicious LSASS access", "On FIN-WS-0142.corp.", "10.20.30.40 a@b.example"),
        ("-leading break", "", "44d88612fea8a8f36de82e1278abb02f 82e6d1c6 1e5"),
        ("", "", ""),
        ("Same same SAME", "same", " ".join(["w"] * 300)),
    ]
    alerts = [
        AlertFactory(title=t, description=d, entities_text=e) for t, d, e in texts
    ]
    written = dict(Alert.objects.values_list("pk", "search_vector"))
    assert all(written[a.pk] is not None for a in alerts)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE tenants_alert SET search_vector = NULL")
        cursor.execute(BACKFILL)
    assert dict(Alert.objects.values_list("pk", "search_vector")) == written


@pytest.mark.django_db
def test_saving_an_alert_with_new_text_renews_its_words():
    alert = AlertFactory(title="first words", description="", entities_text="")
    alert.title = "second words"
    alert.save(update_fields=["title"])
    assert Alert.objects.filter(pk=alert.pk, search_vector="second").exists()
    assert not Alert.objects.filter(pk=alert.pk, search_vector="first").exists()
