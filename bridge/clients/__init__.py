"""API clients, and the two factories that build them for a connection.

Callers (workers, web handlers, the CLI) should use the factories so every
ActiveCampaign client of one account shares the same Redis rate limiter and
every Dataverse client uses the configured app registration and CA bundle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bridge.clients.activecampaign import ActiveCampaignClient, ActiveCampaignError
from bridge.clients.dataverse import (
    DataverseAuthError,
    DataverseClient,
    DataverseError,
    DataverseNotFound,
    RedisTokenCache,
)
from bridge.connections import activecampaign_credentials
from bridge.ratelimit import RedisRateLimiter, activecampaign_limiter_key

if TYPE_CHECKING:
    import redis as redis_lib

    from bridge.config import Settings
    from bridge.models import Connection
    from bridge.runtime import Runtime

__all__ = [
    "ActiveCampaignClient",
    "ActiveCampaignError",
    "DataverseAuthError",
    "DataverseClient",
    "DataverseError",
    "DataverseNotFound",
    "activecampaign_client",
    "activecampaign_limiter",
    "dataverse_client",
    "dataverse_client_for",
]


def activecampaign_limiter(
    redis: redis_lib.Redis, api_url: str, settings: Settings
) -> RedisRateLimiter:
    """The limiter every process shares for one ActiveCampaign account."""
    return RedisRateLimiter(
        redis, activecampaign_limiter_key(api_url), rate=settings.ac_requests_per_second
    )


def activecampaign_client(runtime: Runtime, connection: Connection) -> ActiveCampaignClient:
    """The connection's ActiveCampaign client (raises LookupError when none is configured)."""
    credentials = activecampaign_credentials(connection, runtime.secrets)
    return ActiveCampaignClient(
        credentials.api_url,
        credentials.api_key,
        limiter=activecampaign_limiter(runtime.redis, credentials.api_url, runtime.settings),
        redis=runtime.redis,
    )


def dataverse_client(runtime: Runtime, connection: Connection) -> DataverseClient:
    """A Dataverse client for the connection's org, as the bridge's application user."""
    return dataverse_client_for(runtime, connection.dataverse_url, connection.tenant_id)


def dataverse_client_for(runtime: Runtime, org_url: str, tenant_id: str) -> DataverseClient:
    """A Dataverse client for any org of ``tenant_id`` (also before it is connected).

    Tokens are shared through Redis, so a forked RQ job does not sign in again.
    """
    settings = runtime.settings
    return DataverseClient(
        org_url,
        tenant_id=tenant_id,
        client_id=settings.entra_client_id,
        client_secret=settings.entra_client_secret,
        authority_host=settings.entra_authority_host,
        verify=settings.requests_verify,
        token_cache=RedisTokenCache(runtime.redis, runtime.secrets),
    )
