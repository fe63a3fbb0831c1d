"""User Management API: list holders of the ActiveCampaign User role, search, add, remove."""

from __future__ import annotations

from bridge.auth import ROLE_AC_USER

PATH = "/api/v1/admin/users"


def _names(body):
    return [u["name"] for u in body["users"]]


def test_list_search_add_remove(admin_api):
    admin = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(admin).status_code == 200
    jane_oid = admin_api.user(["Salesperson", ROLE_AC_USER], name="Jane Doe")
    admin_api.user(["Salesperson"], name="Bob O'Neil")
    admin_api.user(["Salesperson"], name="Bobby Tables")

    listed = admin_api.call("GET", PATH, admin)
    assert listed.status_code == 200, listed.get_json()
    assert listed.get_json()["role"] == ROLE_AC_USER
    assert _names(listed.get_json()) == ["Jane Doe"]

    # The quote is escaped; application users and people without a match are not offered.
    found = admin_api.call("GET", f"{PATH}/search?q=O'Nei", admin).get_json()
    assert _names(found) == ["Bob O'Neil"] and found["users"][0]["has_role"] is False
    bobs = admin_api.call("GET", f"{PATH}/search?q=bob", admin).get_json()
    assert sorted(_names(bobs)) == ["Bob O'Neil", "Bobby Tables"]
    assert admin_api.call("GET", f"{PATH}/search?q=Jane", admin).get_json()["users"][0][
        "has_role"
    ]

    bob_id = found["users"][0]["systemuser_id"]
    added = admin_api.call("POST", PATH, admin, json={"systemuser_id": bob_id})
    assert added.status_code == 200, added.get_json()
    assert _names(added.get_json()) == ["Bob O'Neil", "Jane Doe"]
    # Adding twice is harmless.
    again = admin_api.call("POST", PATH, admin, json={"systemuser_id": bob_id})
    assert _names(again.get_json()) == ["Bob O'Neil", "Jane Doe"]

    # Removing takes effect at once for the person's next call (role cache forgotten).
    jane_id = next(u["systemuser_id"] for u in listed.get_json()["users"])
    me = admin_api.call("GET", "/api/v1/me", jane_oid).get_json()
    assert me["is_sales_user"] is True
    removed = admin_api.call("DELETE", f"{PATH}/{jane_id}", admin)
    assert removed.status_code == 200 and _names(removed.get_json()) == ["Bob O'Neil"]
    assert admin_api.call("GET", "/api/v1/me", jane_oid).get_json()["is_sales_user"] is False


def test_search_returns_at_most_ten(admin_api):
    admin = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(admin).status_code == 200
    for n in range(12):
        admin_api.user(["Salesperson"], name=f"Pat {n:02d}")
    body = admin_api.call("GET", f"{PATH}/search?q=Pat", admin).get_json()
    assert len(body["users"]) == 10


def test_user_management_needs_the_admin_role_and_valid_payloads(admin_api):
    admin = admin_api.user(["ActiveCampaign Admin"])
    assert admin_api.connect(admin).status_code == 200
    sales = admin_api.user(["Salesperson", ROLE_AC_USER], name="Jane Doe")
    assert admin_api.call("GET", PATH, sales).status_code == 403
    assert admin_api.call("POST", PATH, sales, json={"systemuser_id": admin}).status_code == 403
    assert admin_api.call("GET", PATH).status_code == 401

    for payload, field in (
        ({}, "systemuser_id"),
        ({"systemuser_id": "not-a-guid"}, "systemuser_id"),
        ({"systemuser_id": "00000000-0000-0000-0000-000000000001", "x": 1}, "x"),
    ):
        response = admin_api.call("POST", PATH, admin, json=payload)
        assert response.status_code == 400, payload
        assert field in response.get_json()["error"]["fields"]
    unknown = admin_api.call(
        "POST", PATH, admin, json={"systemuser_id": "00000000-0000-0000-0000-000000000001"}
    )
    assert unknown.status_code == 404
    assert "systemuser_id" in unknown.get_json()["error"]["fields"]
    empty = admin_api.call("GET", f"{PATH}/search?q=", admin)
    assert empty.status_code == 400 and "q" in empty.get_json()["error"]["fields"]["query"]
