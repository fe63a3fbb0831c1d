"""Marshmallow schema for ActiveCampaign's webhook posts (account webhooks and the
automation "Webhook" action).

ActiveCampaign posts ``application/x-www-form-urlencoded`` bodies with PHP-style
bracket keys (``contact[id]``, ``contact[fields][perstag]``). The bridge only
needs to know *which* contact and *what kind* of event: the worker re-reads the
contact from the API, so nothing else in the body is trusted or even kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

# Account webhook events the bridge acts on; anything else is acknowledged and ignored.
SYNCED_EVENTS = ("update", "subscribe", "unsubscribe", "contact_tag_added", "contact_tag_removed")
MAX_TYPE_LENGTH = 64


@dataclass(frozen=True)
class AcWebhookEvent:
    type: str | None  # None for the automation Webhook action (it sends no ``type``)
    contact_id: str
    email: str | None
    date_time: str | None
    initiated_from: str | None
    series_id: str | None


class AcWebhookSchema(Schema):
    """The few keys the bridge reads, under their wire names."""

    class Meta:
        unknown = EXCLUDE

    type = fields.String(validate=validate.Length(min=1, max=MAX_TYPE_LENGTH))
    contact_id = fields.String(
        data_key="contact[id]", required=True,
        validate=validate.Regexp(r"^[0-9]{1,18}$", error="Must be a contact id (digits)."),
    )
    email = fields.String(data_key="contact[email]", validate=validate.Length(max=320))
    date_time = fields.String(data_key="date_time", validate=validate.Length(max=64))
    initiated_from = fields.String(data_key="initiated_from", validate=validate.Length(max=64))
    series_id = fields.String(
        data_key="seriesid", validate=validate.Regexp(r"^[0-9]{0,18}$")
    )


_SCHEMA = AcWebhookSchema()


def load_ac_webhook(form: Mapping[str, Any], automation: bool = False) -> AcWebhookEvent:
    """Validate a parsed form body; raises ``ValidationError`` (→ 400) when it is not one."""
    data = _SCHEMA.load({key: form[key] for key in form})
    if not automation and not data.get("type"):
        raise ValidationError({"type": ["Missing data for required field."]})
    return AcWebhookEvent(
        type=data.get("type"),
        contact_id=data["contact_id"],
        email=(data.get("email") or None),
        date_time=data.get("date_time") or None,
        initiated_from=data.get("initiated_from") or None,
        series_id=data.get("series_id") or None,
    )
