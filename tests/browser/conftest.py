"""The browser test serves the same published snapshot the AppTest tests read."""

from tests.app.conftest import app_users, build_snapshot, published  # noqa: F401  (fixtures)
