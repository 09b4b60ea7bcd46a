"""Console: process heartbeats (liveness), attempt durations on log rows, and the
operator's new permission (a queue's parallelism)."""

from django.db import migrations, models


def roles_complete(apps, schema_editor):
    # Gives existing operator groups what broker.console.roles now lists (change_queue)
    # and the viewer the view permission of the new model.
    from broker.console.roles import roles_ensure

    roles_ensure(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("broker", "0004_console_roles"),
    ]

    operations = [
        migrations.CreateModel(
            name="Heartbeat",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("identity", models.CharField(max_length=200, unique=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[("worker", "Worker"), ("clock", "Clock")], max_length=16
                    ),
                ),
                ("hostname", models.CharField(max_length=200)),
                ("pid", models.PositiveIntegerField()),
                ("started_at", models.DateTimeField()),
                ("seen_at", models.DateTimeField(db_index=True)),
                ("detail", models.JSONField(blank=True, default=dict)),
            ],
        ),
        # Nullable without a default: PostgreSQL adds it without rewriting the table.
        migrations.AddField(
            model_name="logentry",
            name="duration_ms",
            field=models.PositiveIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(roles_complete, migrations.RunPython.noop),
    ]
