"""The console: the Django admin as an operations UI (dashboard, roles, list helpers)."""
