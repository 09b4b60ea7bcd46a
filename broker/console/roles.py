"""The console's two roles, shipped as Django groups by migration 0004_console_roles.

"viewer" reads every broker and URL-group page and changes nothing; "operator"
also holds the permissions the console's actions check (broker/admin.py,
groups/admin.py). Written against an ``apps`` registry so the migration can run
it on historical models and tests can re-run it after a flush.
"""

from __future__ import annotations

from typing import Any

VIEWER = "viewer"
OPERATOR = "operator"
APPS = ("broker", "groups")

# What an operator may do beyond viewing: (app_label, codename).
OPERATOR_PERMISSIONS = [
    ("broker", "cancel_message"),
    ("broker", "retry_message"),
    ("broker", "publish_message"),
    ("broker", "retry_dlqentry"),
    ("broker", "delete_dlqentry"),
    ("broker", "pause_queue"),
    # Setting a queue's parallelism (the console's queue form; migration 0005).
    ("broker", "change_queue"),
    ("broker", "manage_flowcontrolkey"),
    ("broker", "pause_schedule"),
    ("broker", "delete_schedule"),
    ("broker", "rotate_credentials"),
    ("groups", "add_urlgroup"),
    ("groups", "change_urlgroup"),
    ("groups", "delete_urlgroup"),
    ("groups", "add_endpoint"),
    ("groups", "change_endpoint"),
    ("groups", "delete_endpoint"),
]


def roles_ensure(apps: Any) -> None:
    """Create (or complete) the two groups; idempotent."""
    # In a migration the permission rows do not exist yet on a fresh database
    # (they are made by post_migrate, after every migration): make them now.
    from django.apps import apps as global_apps
    from django.contrib.auth.management import create_permissions

    for label in APPS:
        create_permissions(global_apps.get_app_config(label), verbosity=0, apps=apps)

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    views = list(
        Permission.objects.filter(content_type__app_label__in=APPS, codename__startswith="view_")
    )
    acts = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in OPERATOR_PERMISSIONS
    ]
    viewer, _ = Group.objects.get_or_create(name=VIEWER)
    viewer.permissions.set(views)
    operator, _ = Group.objects.get_or_create(name=OPERATOR)
    operator.permissions.set(views + acts)
