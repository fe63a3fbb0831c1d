"""The admin API under ``/api/v1/admin``: thin flask-smorest views over ``bridge.admin``.

Every view requires the ActiveCampaign Admin or System Administrator role
(``requires_role("admin")``); only Settings/Connect works before the org is connected.
"""

from __future__ import annotations

from bridge.web.admin.connect import blp as connect_blp
from bridge.web.admin.data_configuration import blp as data_configuration_blp
from bridge.web.admin.sync_health import blp as sync_health_blp
from bridge.web.admin.sync_settings import blp as sync_settings_blp
from bridge.web.admin.users import blp as users_blp

BLUEPRINTS = [connect_blp, sync_settings_blp, users_blp, data_configuration_blp,
              sync_health_blp]
