"""Recognising the bridge's own writes to Dataverse (echo suppression).

Every write the bridge makes through the Dataverse Web API carries
``?tag=acbridge:<reason>``. Dataverse hands that value to plug-ins and webhooks
as the ``tag`` shared variable, so the webhook that our own write triggers can
be dropped instead of bouncing the change back to ActiveCampaign.
"""

from __future__ import annotations

ECHO_TAG_PREFIX = "acbridge:"


def echo_tag(reason: str) -> str:
    """The ``tag`` query value a worker adds to a Dataverse write (e.g. ``acbridge:pull``)."""
    return f"{ECHO_TAG_PREFIX}{reason}"


def is_bridge_write(tag: str | None) -> bool:
    """True when a webhook's ``tag`` shared variable says the bridge made the change."""
    return bool(tag) and tag.startswith(ECHO_TAG_PREFIX)
