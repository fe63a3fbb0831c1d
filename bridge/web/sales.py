"""The sales-facing API (issue #5): actions and the timeline, registered by ``bridge.web.api``."""

from __future__ import annotations

from bridge.web.actions import blp as actions_blp
from bridge.web.timeline import blp as timeline_blp

BLUEPRINTS = [actions_blp, timeline_blp]
