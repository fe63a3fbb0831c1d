"""Connecting an organization end to end: the connection row plus its webhooks.

Used by sandbox mode and the ``connect`` CLI command; the admin pages will
call the same function once they exist.
"""

from __future__ import annotations

from bridge.clients import dataverse_client
from bridge.config import Settings
from bridge.connections import (
    connection_for_org,
    create_connection,
    rotate_dataverse_webhook_key,
)
from bridge.mapping import webhook_columns
from bridge.registration import register_webhooks
from bridge.runtime import Runtime


def connect_and_register(
    settings: Settings,
    *,
    dataverse_url: str,
    org_id: str,
    tenant_id: str,
    ac_api_url: str,
    ac_api_key: str,
    name: str = "",
) -> int:
    """Create (or reuse) the connection for ``org_id`` and register its Dataverse webhooks.

    The webhook key is rotated each time: Dataverse cannot give the old one back
    (``authvalue`` is write-only), and only its hash is stored here.
    """
    runtime = Runtime(settings)
    with runtime.db.session() as session:
        connection = connection_for_org(session, org_id)
        if connection is None:
            connection = create_connection(
                session,
                runtime.secrets,
                dataverse_url=dataverse_url,
                dataverse_org_id=org_id,
                tenant_id=tenant_id,
                ac_api_url=ac_api_url,
                ac_api_key=ac_api_key,
                name=name,
            )
        webhook_key = rotate_dataverse_webhook_key(connection)
        dv = dataverse_client(runtime, connection)
        # The bridge's application user: its changes are echoes (see the webhook view).
        connection.dataverse_app_user_id = str(dv.whoami().get("UserId", "")).lower() or None
        register_webhooks(
            dv,
            webhook_url=f"{settings.public_url}/webhooks/dataverse",
            webhook_key=webhook_key,
            columns_by_entity=webhook_columns(),
        )
        connection_id = connection.id
    runtime.db.engine.dispose()
    return connection_id
