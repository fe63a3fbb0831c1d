"""Marshmallow schemas for what arrives from outside (webhooks, API requests)."""

from bridge.schemas.dataverse import (
    Entity,
    EntityReference,
    RemoteExecutionContextSchema,
    WebhookEvent,
    WebhookEventSchema,
    load_webhook_event,
)

__all__ = [
    "Entity",
    "EntityReference",
    "RemoteExecutionContextSchema",
    "WebhookEvent",
    "WebhookEventSchema",
    "load_webhook_event",
]
