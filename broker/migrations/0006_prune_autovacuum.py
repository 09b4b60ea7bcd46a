"""Autovacuum after 1% of the pruned tables is dead, not PostgreSQL's default 20%.

Retention deletes the oldest rows of these tables every minute (broker/services/
maintenance.py). Until a vacuum removes them, their dead entries stay at the low end of
the time indexes, and the planner walks all of them whenever a query's range lies
beyond its statistics (it looks up the index's real endpoint): on the grown bench store,
``/v2/logs?toDate=<before every log row>`` spent 333 ms planning over the dead entries
of 3,000,000 pruned log rows, for an execution of 0.2 ms. With the default 20%, a log
table of 30 million rows (a day and a half at 100 messages/s with 14 days' retention is
far more) would keep 6 million dead rows between vacuums; at 1% it keeps about 300,000.

Only storage parameters: ``ALTER TABLE ... SET`` takes a lock that blocks neither reads
nor writes. SQLite has no autovacuum; nothing to do there.
"""

from typing import Any

from django.db import migrations

TABLES = ("broker_logentry", "broker_message", "broker_payload")
PARAMETERS = "autovacuum_vacuum_scale_factor = 0.01, autovacuum_analyze_scale_factor = 0.01"


def autovacuum_set(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(f"ALTER TABLE {table} SET ({PARAMETERS})")


def autovacuum_reset(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in TABLES:
        schema_editor.execute(
            f"ALTER TABLE {table} RESET"
            " (autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor)"
        )


class Migration(migrations.Migration):
    dependencies = [
        ("broker", "0005_console_liveness_durations"),
    ]

    operations = [
        migrations.RunPython(autovacuum_set, autovacuum_reset),
    ]
