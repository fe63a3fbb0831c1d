"""User Management: who holds the ActiveCampaign User security role, add it, remove it.

Everything goes through the Dataverse Web API as the bridge's application user:

* the role is found by name (``roles?$filter=name eq 'ActiveCampaign User'``); an organization
  with several business units has one copy per unit, so the copy of the user's business unit is
  used when there is one, else the root unit's;
* holders: ``roles(<id>)/systemuserroles_association`` over every copy of the role;
* the search (as the admin types): ``systemusers?$filter=contains(fullname,'…')`` with quotes
  escaped, enabled people only (no application users), top 10;
* add / remove: ``POST systemusers(<id>)/systemuserroles_association/$ref`` and
  ``DELETE systemusers(<id>)/systemuserroles_association(<roleid>)/$ref``, then the person's
  cached role lookup is dropped (``bridge.auth.forget_user``) so the change counts at once.
"""

from __future__ import annotations

import logging
from typing import Any

from bridge.auth import ROLE_AC_USER, DynamicsUser, forget_user
from bridge.clients import DataverseError, dataverse_client_for
from bridge.clients.dataverse import DataverseClient
from bridge.errors import ApiError
from bridge.runtime import Runtime

log = logging.getLogger(__name__)

SEARCH_LIMIT = 10
USER_COLUMNS = "systemuserid,fullname,internalemailaddress,isdisabled,azureactivedirectoryobjectid"


def odata_string(value: str) -> str:
    """A quoted OData string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _client(runtime: Runtime, user: DynamicsUser) -> DataverseClient:
    return dataverse_client_for(runtime, user.org_url, user.tenant_id)


def _unavailable(err: DataverseError) -> ApiError:
    log.warning("user management: Dataverse refused: %s", err)
    return ApiError(502, "dynamics_unavailable", f"Dynamics refused the request: {err.message}")


def _roles(client: DataverseClient) -> list[dict[str, Any]]:
    roles = client.request(
        "GET",
        "roles",
        params={
            "$select": "roleid,name,_businessunitid_value",
            "$filter": f"name eq {odata_string(ROLE_AC_USER)}",
        },
    ).json()["value"]
    if not roles:
        raise ApiError(
            409,
            "role_missing",
            f"the {ROLE_AC_USER} security role is not in this organization; import the solution",
        )
    return roles


def _person(row: dict[str, Any], has_role: bool) -> dict[str, Any]:
    return {
        "systemuser_id": row["systemuserid"],
        "name": row.get("fullname") or "",
        "email": row.get("internalemailaddress") or None,
        "has_role": has_role,
    }


def _holders(client: DataverseClient, roles: list[dict[str, Any]]) -> dict[str, dict]:
    holders: dict[str, dict] = {}
    for role in roles:
        rows = client.request(
            "GET",
            f"roles({role['roleid']})/systemuserroles_association",
            params={"$select": USER_COLUMNS},
        ).json()["value"]
        for row in rows:
            holders[row["systemuserid"].lower()] = row
    return holders


def list_users(runtime: Runtime, user: DynamicsUser) -> dict[str, Any]:
    client = _client(runtime, user)
    try:
        holders = _holders(client, _roles(client))
    except DataverseError as err:
        raise _unavailable(err) from None
    people = sorted(
        (_person(row, True) for row in holders.values()), key=lambda p: p["name"].casefold()
    )
    return {"role": ROLE_AC_USER, "users": people}


def search(runtime: Runtime, user: DynamicsUser, text: str) -> dict[str, Any]:
    """Up to 10 enabled people whose name contains ``text``, each saying if they hold the role."""
    text = text.strip()
    if not text:
        raise ApiError(400, "invalid_request", "type part of a name", fields={"q": ["type a name"]})
    client = _client(runtime, user)
    try:
        rows = list(
            client.query(
                "systemusers",
                select=USER_COLUMNS.split(","),
                filter=(
                    f"contains(fullname,{odata_string(text)}) and isdisabled eq false"
                    " and applicationid eq null"
                ),
                orderby="fullname asc",
                top=SEARCH_LIMIT,
                page_size=SEARCH_LIMIT,
            )
        )[:SEARCH_LIMIT]
        holders = _holders(client, _roles(client))
    except DataverseError as err:
        raise _unavailable(err) from None
    return {
        "role": ROLE_AC_USER,
        "users": [_person(row, row["systemuserid"].lower() in holders) for row in rows],
    }


def _target(client: DataverseClient, systemuser_id: str) -> dict[str, Any]:
    try:
        rows = list(
            client.query(
                "systemusers",
                select=[*USER_COLUMNS.split(","), "_businessunitid_value"],
                filter=f"systemuserid eq {systemuser_id}",
                page_size=1,
            )
        )
    except DataverseError as err:
        raise _unavailable(err) from None
    if not rows:
        raise ApiError(
            404, "unknown_user", "no such user in this organization",
            fields={"systemuser_id": ["no such user in this organization"]},
        )
    return rows[0]


def _role_for(roles: list[dict[str, Any]], person: dict[str, Any]) -> dict[str, Any]:
    unit = (person.get("_businessunitid_value") or "").lower()
    return next(
        (r for r in roles if (r.get("_businessunitid_value") or "").lower() == unit), roles[0]
    )


def _forget(runtime: Runtime, user: DynamicsUser, person: dict[str, Any]) -> None:
    oid = person.get("azureactivedirectoryobjectid")
    if oid:
        forget_user(runtime, user.org_url, str(oid))


def add_user(runtime: Runtime, user: DynamicsUser, systemuser_id: str) -> dict[str, Any]:
    client = _client(runtime, user)
    person = _target(client, systemuser_id)
    if person.get("isdisabled"):
        raise ApiError(
            400, "user_disabled", "this user is disabled in Dynamics",
            fields={"systemuser_id": ["this user is disabled in Dynamics"]},
        )
    try:
        roles = _roles(client)
        if systemuser_id.lower() not in _holders(client, roles):
            role = _role_for(roles, person)
            client.request(
                "POST",
                f"systemusers({systemuser_id})/systemuserroles_association/$ref",
                json={"@odata.id": f"{client.base}roles({role['roleid']})"},
            )
    except DataverseError as err:
        raise _unavailable(err) from None
    _forget(runtime, user, person)
    return list_users(runtime, user)


def remove_user(runtime: Runtime, user: DynamicsUser, systemuser_id: str) -> dict[str, Any]:
    client = _client(runtime, user)
    person = _target(client, systemuser_id)
    try:
        roles = _roles(client)
        for role in roles:
            held = client.request(
                "GET",
                f"systemusers({systemuser_id})/systemuserroles_association",
                params={"$select": "roleid", "$filter": f"roleid eq {role['roleid']}"},
            ).json()["value"]
            if held:
                client.request(
                    "DELETE",
                    f"systemusers({systemuser_id})/systemuserroles_association"
                    f"({role['roleid']})/$ref",
                )
    except DataverseError as err:
        raise _unavailable(err) from None
    _forget(runtime, user, person)
    return list_users(runtime, user)
