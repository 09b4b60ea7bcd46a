"""Indexes for every filter of logs, the DLQ and bulk cancel, and for a prune that reads
only what it deletes (issue 12: the store at scale).

On PostgreSQL every index is built ``CONCURRENTLY``, so migrating a store of millions of
rows does not stop publishing or delivery while the indexes build (hence a non-atomic
migration). The label index needs ``pg_trgm``, which ships with PostgreSQL and is a
trusted extension: the database owner may enable it. SQLite, the embedded store, gets
the plain indexes only (and its filters read no expression index).
"""

from typing import Any

from django.db import migrations, models

# Indexes that only PostgreSQL has (name -> method and expression).
POSTGRESQL_INDEXES = {
    # The url, host and path filters (broker/filters.py, whose expressions must match these
    # texts exactly): btree over the md5 of the value, because a btree entry is limited to
    # about 2.7 kB and a URL may be 4 kB. Not hash indexes: a hash bucket holding a
    # million messages to one host is a chain of overflow pages that every insert walks,
    # where btree stores duplicates compactly (deduplication).
    # "md5(url) = ANY(...)"
    "message_url_md5_idx": "btree (md5(url))",
    # "md5(substring(lower(url), '^https?://([^/?#:]*)')) = md5('host')"
    "message_host_md5_idx": "btree (md5(substring(lower(url), '^https?://([^/?#:]*)')))",
    # "md5(substring(url, '^https?://[^/]+(/[^?#]*)')) = md5('/path')"
    "message_path_md5_idx": "btree (md5(substring(url, '^https?://[^/]+(/[^?#]*)')))",
    # The label filter: "labels LIKE '%,a,%'" (labels are stored as ",a,b,"): pg_trgm.
    "message_labels_trgm_idx": "gin (labels gin_trgm_ops)",
}


def _postgresql(schema_editor: Any) -> bool:
    return bool(schema_editor.connection.vendor == "postgresql")


class AddIndexOnline(migrations.AddIndex):
    """``AddIndex``, built ``CONCURRENTLY`` on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            kwargs = {"concurrently": True} if _postgresql(schema_editor) else {}
            schema_editor.add_index(model, self.index, **kwargs)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            kwargs = {"concurrently": True} if _postgresql(schema_editor) else {}
            schema_editor.remove_index(model, self.index, **kwargs)


class RemoveIndexOnline(migrations.RemoveIndex):
    """``RemoveIndex``, dropped ``CONCURRENTLY`` on PostgreSQL."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = from_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            kwargs = {"concurrently": True} if _postgresql(schema_editor) else {}
            schema_editor.remove_index(model, index, **kwargs)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):  # type: ignore[no-untyped-def]
        model = to_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            index = to_state.models[app_label, self.model_name_lower].get_index_by_name(self.name)
            kwargs = {"concurrently": True} if _postgresql(schema_editor) else {}
            schema_editor.add_index(model, index, **kwargs)


def postgresql_indexes_add(apps: Any, schema_editor: Any) -> None:
    if not _postgresql(schema_editor):
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, definition in POSTGRESQL_INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON broker_message USING {definition}"
        )


def postgresql_indexes_remove(apps: Any, schema_editor: Any) -> None:
    if not _postgresql(schema_editor):
        return
    for name in POSTGRESQL_INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    # The extension stays: something else may use it, and it costs nothing.


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("broker", "0002_queues_flow_control_schedules"),
    ]

    operations = [
        migrations.RunPython(postgresql_indexes_add, postgresql_indexes_remove, atomic=False),
        RemoveIndexOnline(
            model_name="message",
            name="message_finished_idx",
        ),
        AddIndexOnline(
            model_name="logentry",
            index=models.Index(fields=["time", "id"], name="log_time_id_idx"),
        ),
        RemoveIndexOnline(
            model_name="logentry",
            name="log_time_idx",
        ),
        AddIndexOnline(
            model_name="logentry",
            index=models.Index(fields=["state", "time", "id"], name="log_state_idx"),
        ),
        AddIndexOnline(
            model_name="message",
            index=models.Index(
                condition=models.Q(("finished_at__isnull", False)),
                fields=["state", "finished_at"],
                name="message_finished_state_idx",
            ),
        ),
        AddIndexOnline(
            model_name="message",
            index=models.Index(
                condition=models.Q(("state__in", ["CREATED", "ACTIVE", "RETRY"])),
                fields=["id"],
                name="message_pending_idx",
            ),
        ),
        *(
            AddIndexOnline(
                model_name="message",
                index=models.Index(
                    condition=models.Q((field, ""), _negated=True),
                    fields=[field],
                    name=f"message_{field}_idx",
                ),
            )
            for field in (
                "topic_name",
                "endpoint_name",
                "queue_name",
                "schedule_id",
                "flow_control_key",
            )
        ),
        AddIndexOnline(
            model_name="message",
            index=models.Index(fields=["caller_ip"], name="message_caller_ip_idx"),
        ),
        AddIndexOnline(
            model_name="message",
            index=models.Index(
                condition=models.Q(("state", "FAILED")),
                fields=["last_response_status"],
                name="message_failed_status_idx",
            ),
        ),
    ]
