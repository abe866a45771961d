"""One incident row per real incident: the XDR and Graph copies of an incident (the
same number in both APIs) become one row.

Every row's ``raw`` becomes ``{source: payload}`` and its ``seen_in``
``{source: update time}``. Of the copies of one incident the row most alerts link to
is kept (the XDR copy, as alerts were linked so far; the oldest on a tie); it takes
the fields of the newest copy, every copy's payload and update time, and the earliest
first-seen time. Alerts and the admin's history that pointed at a dropped copy point
at the kept row, then the dropped copies are deleted.

Reversing keeps one row per incident (the old schema allows that; the next sync of
the other API stores its copy again) and turns ``raw`` back into the payload of the
source whose fields the row shows.
"""

from django.db import migrations
from django.db.models import Count

FIELDS = (
    "source",
    "title",
    "severity",
    "status",
    "classification",
    "determination",
    "assigned_to",
    "created_at_source",
    "updated_at_source",
    "portal_url",
)


def merge_incident_copies(apps, schema_editor):
    Incident = apps.get_model("alerts", "Incident")
    Alert = apps.get_model("alerts", "Alert")
    ContentType = apps.get_model("contenttypes", "ContentType")
    LogEntry = apps.get_model("admin", "LogEntry")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE tenants_incident
            SET raw = jsonb_build_object(source, raw),
                seen_in = jsonb_build_object(source, to_jsonb(updated_at_source))
            """
        )
    content_type = ContentType.objects.filter(
        app_label="alerts", model="incident"
    ).first()
    groups = (
        Incident.objects.order_by()
        .values("tenant_id", "provider_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    for group in list(groups):
        copies = list(
            Incident.objects.filter(
                tenant_id=group["tenant_id"], provider_id=group["provider_id"]
            )
            .annotate(links=Count("alerts"))
            .order_by("-links", "id")
        )
        kept, dropped = copies[0], copies[1:]
        newest = max(copies, key=lambda c: (c.updated_at_source, c is kept))
        for name in FIELDS:
            setattr(kept, name, getattr(newest, name))
        kept.raw = {k: v for c in copies for k, v in c.raw.items()}
        kept.seen_in = {k: v for c in copies for k, v in c.seen_in.items()}
        kept.first_seen_at = min(c.first_seen_at for c in copies)
        dropped_ids = [c.pk for c in dropped]
        Alert.objects.filter(incident_id__in=dropped_ids).update(incident_id=kept.pk)
        if content_type is not None:
            LogEntry.objects.filter(
                content_type=content_type,
                object_id__in=[str(pk) for pk in dropped_ids],
            ).update(object_id=str(kept.pk))
        Incident.objects.filter(pk__in=dropped_ids).delete()
        # `save()` would move `last_synced_at` (auto_now): update instead.
        Incident.objects.filter(pk=kept.pk).update(
            raw=kept.raw,
            seen_in=kept.seen_in,
            first_seen_at=kept.first_seen_at,
            **{name: getattr(kept, name) for name in FIELDS},
        )
    # Alerts that name an incident no row of which they link to yet.
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE tenants_alert a SET incident_id = i.id
            FROM tenants_incident i
            WHERE a.incident_id IS NULL AND a.incident_provider_id <> ''
              AND i.tenant_id = a.tenant_id AND i.provider_id = a.incident_provider_id
            """
        )


def unmerge_payloads(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            """
            UPDATE tenants_incident SET raw = raw -> source
            WHERE jsonb_typeof(raw -> source) = 'object'
            """
        )


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0002_incident_seen_in"),
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.RunPython(merge_incident_copies, unmerge_payloads, elidable=False)
    ]
