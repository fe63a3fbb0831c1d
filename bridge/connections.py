"""Creating connections and reading their secrets.

The secrets a connection needs are generated here and returned once, in
plain text, to the caller that must hand them on (the webhook key goes to
Dataverse, the ActiveCampaign webhook token into a URL); only hashes stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bridge.crypto import SecretBox, hash_secret, new_token
from bridge.models import Connection


@dataclass(frozen=True)
class ActiveCampaignCredentials:
    api_url: str
    api_key: str

    def __repr__(self) -> str:
        return f"ActiveCampaignCredentials(api_url={self.api_url!r}, api_key='…')"


def create_connection(
    session: Session,
    box: SecretBox,
    *,
    dataverse_url: str,
    dataverse_org_id: str,
    tenant_id: str,
    ac_api_url: str | None = None,
    ac_api_key: str | None = None,
    name: str = "",
) -> Connection:
    connection = Connection(
        name=name,
        dataverse_url=dataverse_url.rstrip("/"),
        dataverse_org_id=dataverse_org_id.lower(),
        tenant_id=tenant_id.lower(),
    )
    if ac_api_url and ac_api_key:
        set_activecampaign_credentials(connection, box, ac_api_url, ac_api_key)
    session.add(connection)
    session.flush()
    return connection


def set_activecampaign_credentials(
    connection: Connection, box: SecretBox, api_url: str, api_key: str
) -> None:
    connection.ac_api_url = api_url.rstrip("/")
    connection.ac_api_key_encrypted = box.encrypt(api_key)
    connection.ac_api_key_last4 = api_key[-4:]


def activecampaign_credentials(connection: Connection, box: SecretBox) -> ActiveCampaignCredentials:
    if not connection.ac_api_url or not connection.ac_api_key_encrypted:
        raise LookupError(f"connection {connection.id} is not connected to ActiveCampaign")
    return ActiveCampaignCredentials(
        connection.ac_api_url, box.decrypt(connection.ac_api_key_encrypted)
    )


def rotate_dataverse_webhook_key(connection: Connection) -> str:
    """A new WebhookKey for Dataverse to send as ``?code=``; only its hash is kept."""
    key = new_token()
    connection.dataverse_webhook_key_hash = hash_secret(key)
    return key


def rotate_activecampaign_webhook_token(connection: Connection) -> str:
    """A new secret path segment for ActiveCampaign's webhooks; only its hash is kept."""
    token = new_token()
    connection.ac_webhook_token_hash = hash_secret(token)
    return token


def connection_for_org(session: Session, org_id: str) -> Connection | None:
    return session.scalar(select(Connection).where(Connection.dataverse_org_id == org_id.lower()))
