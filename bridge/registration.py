"""Registering the bridge's webhook in a Dataverse organization through the Web API.

No Plug-in Registration Tool: one ``serviceendpoint`` (contract 8 Webhook,
WebhookKey auth so Dataverse sends ``?code=<key>``) and, for lead and contact,
an asynchronous post-operation step per message (Create, Update, Delete).

Idempotent by name: running it again updates the endpoint's URL and key and
each step's settings in place, so re-registering after a key rotation or a URL
change never duplicates anything (duplicate steps would double every delivery).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.clients.dataverse import DataverseClient

ENDPOINT_NAME = "ActiveCampaign Bridge"
MESSAGES = ("Create", "Update", "Delete")
ENTITIES = ("lead", "contact")

CONTRACT_WEBHOOK = 8
AUTHTYPE_WEBHOOK_KEY = 4
MESSAGEFORMAT_JSON = 2
STAGE_POST_OPERATION = 40
MODE_ASYNC = 1


@dataclass
class RegistrationResult:
    endpoint_id: str
    endpoint_created: bool
    step_ids: dict[str, str] = field(default_factory=dict)  # step name -> id
    steps_created: int = 0
    steps_updated: int = 0


def step_name(entity: str, message: str) -> str:
    return f"{ENDPOINT_NAME}: {message} of {entity}"


def _odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _find_one(client: DataverseClient, entity_set: str, key: str, filter: str) -> str | None:
    rows = list(client.query(entity_set, select=[key], filter=filter, page_size=10))
    return str(rows[0][key]) if rows else None


def find_endpoint(client: DataverseClient) -> str | None:
    return _find_one(
        client,
        "serviceendpoints",
        "serviceendpointid",
        f"name eq {_odata_string(ENDPOINT_NAME)} and contract eq {CONTRACT_WEBHOOK}",
    )


def _message_id(client: DataverseClient, message: str) -> str:
    found = _find_one(client, "sdkmessages", "sdkmessageid", f"name eq {_odata_string(message)}")
    if not found:
        raise LookupError(f"Dataverse has no sdkmessage named {message!r}")
    return found


def _filter_id(client: DataverseClient, message_id: str, entity: str) -> str:
    found = _find_one(
        client,
        "sdkmessagefilters",
        "sdkmessagefilterid",
        f"primaryobjecttypecode eq {_odata_string(entity)} and _sdkmessageid_value eq {message_id}",
    )
    if not found:
        raise LookupError(f"Dataverse has no sdkmessagefilter for {entity}")
    return found


def register_webhooks(
    client: DataverseClient,
    *,
    webhook_url: str,
    webhook_key: str,
    columns_by_entity: dict[str, list[str]],
) -> RegistrationResult:
    """Create or update the endpoint and its six steps; returns what was done."""
    endpoint_body = {
        "name": ENDPOINT_NAME,
        "url": webhook_url,
        "contract": CONTRACT_WEBHOOK,
        "authtype": AUTHTYPE_WEBHOOK_KEY,
        "authvalue": webhook_key,
        "messageformat": MESSAGEFORMAT_JSON,
        "description": "Sends lead and contact changes to the ActiveCampaign Bridge",
    }
    endpoint_id = find_endpoint(client)
    created = endpoint_id is None
    if endpoint_id is None:
        endpoint_id = client.create("serviceendpoints", endpoint_body)
    else:
        client.update(
            "serviceendpoints",
            endpoint_id,
            {"url": webhook_url, "authtype": AUTHTYPE_WEBHOOK_KEY, "authvalue": webhook_key,
             "messageformat": MESSAGEFORMAT_JSON},
        )
    result = RegistrationResult(endpoint_id=endpoint_id, endpoint_created=created)

    for message in MESSAGES:
        message_id = _message_id(client, message)
        for entity in ENTITIES:
            name = step_name(entity, message)
            body: dict[str, object] = {
                "name": name,
                "description": f"Tells the ActiveCampaign Bridge about {message} of {entity}",
                "stage": STAGE_POST_OPERATION,
                "mode": MODE_ASYNC,
                "rank": 1,
                "supporteddeployment": 0,
                "asyncautodelete": True,
                "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
                "sdkmessageid@odata.bind": f"/sdkmessages({message_id})",
                "sdkmessagefilterid@odata.bind": (
                    f"/sdkmessagefilters({_filter_id(client, message_id, entity)})"
                ),
            }
            if message == "Update":
                # Only changes to mapped columns matter; the write-back columns are not in
                # this list, so the bridge's own writes do not fire the webhook at all.
                body["filteringattributes"] = ",".join(columns_by_entity.get(entity, []))
            existing = _find_one(
                client,
                "sdkmessageprocessingsteps",
                "sdkmessageprocessingstepid",
                f"name eq {_odata_string(name)}",
            )
            if existing:
                client.update("sdkmessageprocessingsteps", existing, body)
                result.steps_updated += 1
                result.step_ids[name] = existing
            else:
                result.step_ids[name] = client.create("sdkmessageprocessingsteps", body)
                result.steps_created += 1
    return result


def unregister_webhooks(client: DataverseClient) -> int:
    """Delete the endpoint (its steps cascade) and any step left behind; returns rows deleted."""
    deleted = 0
    endpoint_id = find_endpoint(client)
    if endpoint_id:
        client.delete("serviceendpoints", endpoint_id)
        deleted += 1
    for entity in ENTITIES:
        for message in MESSAGES:
            name = step_name(entity, message)
            for row in list(
                client.query(
                    "sdkmessageprocessingsteps",
                    select=["sdkmessageprocessingstepid"],
                    filter=f"name eq {_odata_string(name)}",
                )
            ):
                client.delete("sdkmessageprocessingsteps", row["sdkmessageprocessingstepid"])
                deleted += 1
    return deleted
