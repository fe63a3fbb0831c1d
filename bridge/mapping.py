"""The standard field mapping between Dynamics leads/contacts and ActiveCampaign contacts.

One place, used by every sync path (webhook, delta, initial), so a row always
maps to the same payload and the same hash whichever path pushed it: that is
what lets a worker recognise "nothing changed" and skip the API call.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

TAG_LEAD = "D365: Lead"
TAG_CONTACT = "D365: Contact"
TAG_PUSHED = "D365: Pushed from Dynamics"
TAG_PULLED = "D365: Pulled from ActiveCampaign"
D365_TAGS = (TAG_LEAD, TAG_CONTACT, TAG_PUSHED, TAG_PULLED)

# Columns the bridge's solution adds to lead and contact; written back, never mapped.
AC_CONTACT_ID_COLUMN = "ac_activecampaigncontactid"
AC_LAST_SYNCED_COLUMN = "ac_lastsyncedon"

# The Dynamics columns the standard mapping reads (and whose Update fires the webhook).
MAPPED_COLUMNS = ("emailaddress1", "firstname", "lastname", "telephone1", "mobilephone")


@dataclass(frozen=True)
class EntityInfo:
    """What the Web API needs to know about a synced table."""

    logical_name: str
    entity_set: str
    primary_key: str
    tag: str  # the ActiveCampaign tag that says which table a contact came from

    @property
    def select(self) -> list[str]:
        """The ``$select`` for re-reading a row before a push."""
        return [self.primary_key, *MAPPED_COLUMNS, "modifiedon", AC_CONTACT_ID_COLUMN]

    @property
    def filtering_attributes(self) -> list[str]:
        """Columns whose update should fire the webhook (not the write-back columns)."""
        return list(MAPPED_COLUMNS)


ENTITIES: dict[str, EntityInfo] = {
    "lead": EntityInfo("lead", "leads", "leadid", TAG_LEAD),
    "contact": EntityInfo("contact", "contacts", "contactid", TAG_CONTACT),
}


def entity_info(entity: str) -> EntityInfo:
    try:
        return ENTITIES[entity]
    except KeyError:
        raise ValueError(f"unsupported table {entity!r}: expected lead or contact") from None


@dataclass(frozen=True)
class ContactPayload:
    """What ActiveCampaign should hold for one Dynamics row."""

    email: str | None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    field_values: dict[str, str] = field(default_factory=dict)

    def canonical(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "phone": self.phone,
            "field_values": {str(k): v for k, v in sorted(self.field_values.items())},
        }


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def normalize_email(value: Any) -> str | None:
    text = _text(value)
    return text.lower() if text else None


def to_activecampaign(entity: str, row: dict[str, Any]) -> ContactPayload:
    """Map a Dataverse row (Web API shape) with the standard mapping.

    A thin front for ``bridge.fieldmap.Mapper`` (the one mapping engine), which
    also handles configured custom-field mappings.
    """
    from bridge.fieldmap import Mapper

    return Mapper(entity).to_activecampaign(row).payload


def payload_hash(payload: ContactPayload) -> str:
    """A stable SHA-256 of the payload (sorted keys, no whitespace), stored in the ledger."""
    canonical = json.dumps(
        payload.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_id(entity: str, row: dict[str, Any]) -> str | None:
    """The row's primary key, lower-case without braces."""
    value = row.get(entity_info(entity).primary_key)
    return str(value).strip("{}").lower() if value else None


def webhook_columns() -> dict[str, list[str]]:
    """Per table, the columns whose Update should fire the Dataverse webhook.

    The write-back columns are left out on purpose: the bridge's own write of
    the ActiveCampaign id must not wake the webhook at all.
    """
    return {name: info.filtering_attributes for name, info in ENTITIES.items()}
