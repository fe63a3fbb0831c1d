"""Fixtures of the web tests (the admin API set-up lives in admin_support)."""

from tests.web.admin_support import admin_api  # noqa: F401
