"""An emulated ActiveCampaign account (API v3 + v1 + webhook sender) for tests and sandbox mode.

Faithful to the public docs summarised in ``shared/facts/activecampaign.md``: string ids and
totals, 403 for a bad ``Api-Token``, 5 requests/second with 429 + ``Retry-After``, bulk import
limits, form-encoded webhooks. See :class:`ActiveCampaignEmulator`.
"""

from .emulator import ActiveCampaignEmulator

__all__ = ["ActiveCampaignEmulator"]
