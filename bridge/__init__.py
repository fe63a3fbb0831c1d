"""ActiveCampaign Bridge: Dynamics 365 (Dataverse) ⇄ ActiveCampaign sync.

``create_app`` is imported lazily so that worker processes, which import
``bridge.*`` modules but never serve HTTP, do not load Flask and the views.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from bridge.app import create_app

        return create_app
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
