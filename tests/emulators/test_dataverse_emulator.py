"""The Dataverse + Entra emulator, exercised over real HTTPS only (requests, msal)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import msal
import pytest
import requests
from flask import Flask, request

from emulators.dataverse import DataverseEmulator
from emulators.server import serve_in_thread

CLIENT_ID = "0f6b3b4e-1d2c-4a5b-9c8d-7e6f5a4b3c2d"
SECRET = "test-secret"
REPO = Path(__file__).resolve().parents[2]


# --- fixtures ---
@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> DataverseEmulator:
    emulator = DataverseEmulator(
        apps={CLIENT_ID: SECRET}, webhook_timeout=5.0, state_dir=tmp_path_factory.mktemp("dv")
    )
    emulator.start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="module")
def http(emu: DataverseEmulator) -> requests.Session:
    """A session trusting the emulator's CA (trust_env off: REQUESTS_CA_BUNDLE would win)."""
    session = requests.Session()
    session.verify = emu.ca_bundle
    session.trust_env = False
    return session


@pytest.fixture(scope="module")
def token(emu: DataverseEmulator, http: requests.Session) -> str:
    resp = http.post(
        f"{emu.url}/{emu.tenant_id}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "scope": f"{emu.url}/.default",
        },
    )
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


@pytest.fixture(scope="module")
def api(emu: DataverseEmulator, http: requests.Session, token: str) -> Api:
    return Api(emu, http, token)


class Api:
    """Tiny Web API client for the tests."""

    def __init__(self, emu: DataverseEmulator, http: requests.Session, token: str) -> None:
        self.emu, self.http, self.token = emu, http, token

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "Accept": "application/json",
            "OData-MaxVersion": "4.0",
            "OData-Version": "4.0",
            **(extra or {}),
        }

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> requests.Response:
        url = path if path.startswith("https://") else f"{self.emu.api_url}/{path}"
        return self.http.request(method, url, json=json_body, headers=self.headers(headers), **kw)

    def create(self, entity_set: str, body: dict[str, Any], query: str = "") -> str:
        resp = self.call("POST", f"{entity_set}{query}", json_body=body)
        assert resp.status_code == 204, resp.text
        return re.search(r"\(([0-9a-f-]{36})\)$", resp.headers["OData-EntityId"]).group(1)


class Receiver:
    """A small Flask app that records webhook POSTs and answers with a chosen status."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        app = Flask("receiver")

        @app.post("/hook/<int:status>")
        def hook(status: int):
            with self.lock:
                self.requests.append(
                    {
                        "path": request.path,
                        "args": request.args.to_dict(),
                        "headers": dict(request.headers),
                        "body": request.get_data(),
                    }
                )
            delay = float(request.args.get("delay", "0") or 0)
            if delay:
                time.sleep(delay)
            return "", status

        self.server = serve_in_thread(app)
        self.url = self.server.url


@pytest.fixture(scope="module")
def receiver() -> Receiver:
    rec = Receiver()
    yield rec
    rec.server.stop()


def wait_deliveries(
    emu: DataverseEmulator, step_id: str, count: int, timeout: float = 5.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [d for d in list(emu.webhook_deliveries) if d["step_id"] == step_id]
        if len(found) >= count:
            return found
        time.sleep(0.02)
    raise AssertionError(f"expected {count} deliveries for step {step_id}")


def register_webhook(
    api: Api,
    url: str,
    message: str,
    entity: str,
    *,
    mode: int = 1,
    authtype: int = 4,
    authvalue: str = "secret-code",
    filtering: str = "",
    images: list[dict[str, Any]] | None = None,
) -> tuple[str, str]:
    """Register serviceendpoint + step (+ images) the way the bridge does; returns ids."""
    msg = api.call("GET", f"sdkmessages?$filter=name eq '{message}'&$select=sdkmessageid")
    msg_id = msg.json()["value"][0]["sdkmessageid"]
    flt = api.call(
        "GET",
        "sdkmessagefilters?$select=sdkmessagefilterid&$filter="
        f"primaryobjecttypecode eq '{entity}' and _sdkmessageid_value eq {msg_id}",
    )
    filter_id = flt.json()["value"][0]["sdkmessagefilterid"]
    endpoint_id = api.create(
        "serviceendpoints",
        {
            "name": f"bridge {uuid.uuid4().hex[:6]}",
            "url": url,
            "contract": 8,
            "authtype": authtype,
            "authvalue": authvalue,
        },
    )
    step: dict[str, Any] = {
        "name": f"ActiveCampaign Bridge: {message} of {entity}",
        "stage": 40,
        "mode": mode,
        "rank": 1,
        "supporteddeployment": 0,
        "asyncautodelete": False,
        "eventhandler_serviceendpoint@odata.bind": f"/serviceendpoints({endpoint_id})",
        "sdkmessageid@odata.bind": f"/sdkmessages({msg_id})",
        "sdkmessagefilterid@odata.bind": f"/sdkmessagefilters({filter_id})",
    }
    if filtering:
        step["filteringattributes"] = filtering
    step_id = api.create("sdkmessageprocessingsteps", step)
    for image in images or []:
        api.create(
            "sdkmessageprocessingstepimages",
            {
                **image,
                "messagepropertyname": "Target",
                "sdkmessageprocessingstepid@odata.bind": f"/sdkmessageprocessingsteps({step_id})",
            },
        )
    return endpoint_id, step_id


def body_of(delivery: dict[str, Any]) -> dict[str, Any]:
    return json.loads(delivery["body"])


def kv(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {p["key"]: p["value"] for p in pairs}


# --- Entra ---
def test_msal_client_credentials_flow(emu: DataverseEmulator, http: requests.Session) -> None:
    app = msal.ConfidentialClientApplication(
        CLIENT_ID,
        client_credential=SECRET,
        authority=f"{emu.authority_host}/{emu.tenant_id}",
        instance_discovery=False,
        http_client=http,
    )
    result = app.acquire_token_for_client(scopes=[f"{emu.url}/.default"])
    assert result.get("token_type") == "Bearer", result
    import jwt

    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == emu.url and claims["appid"] == CLIENT_ID == claims["azp"]
    assert claims["tid"] == emu.tenant_id
    who = http.get(
        f"{emu.api_url}/WhoAmI", headers={"Authorization": f"Bearer {result['access_token']}"}
    ).json()
    assert who["UserId"] == emu.app_user_id(CLIENT_ID)
    config = http.get(f"{emu.url}/{emu.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert config["issuer"] == f"{emu.url}/{emu.tenant_id}/v2.0"
    keys = http.get(config["jwks_uri"]).json()["keys"]
    user_token = emu.mint_user_token(oid=str(uuid.uuid4()), aud="api://bridge", upn="u@x.com")
    signing_key = jwt.PyJWK(keys[0]).key
    decoded = jwt.decode(
        user_token,
        signing_key,
        algorithms=["RS256"],
        audience="api://bridge",
        issuer=config["issuer"],
    )
    assert decoded["preferred_username"] == "u@x.com" and decoded["ver"] == "2.0"


def test_token_errors(emu: DataverseEmulator, http: requests.Session) -> None:
    url = f"{emu.url}/{emu.tenant_id}/oauth2/v2.0/token"
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": "nope",
        "scope": f"{emu.url}/.default",
    }
    resp = http.post(url, data=form)
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"
    assert resp.json()["error_description"].startswith("AADSTS7000215: Invalid client secret")
    resp = http.post(url, data={**form, "client_id": str(uuid.uuid4())})
    assert resp.status_code == 400 and resp.json()["error"] == "unauthorized_client"
    resp = http.post(
        url,
        data={**form, "client_secret": SECRET, "scope": "https://other.crm.dynamics.com/.default"},
    )
    assert resp.status_code == 400 and "AADSTS500011" in resp.json()["error_description"]


def test_web_api_requires_valid_bearer(emu: DataverseEmulator, http: requests.Session) -> None:
    resp = http.get(f"{emu.api_url}/leads")
    assert resp.status_code == 401
    assert set(resp.json()["error"]) == {"code", "message"}
    assert resp.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    resp = http.get(f"{emu.api_url}/leads", headers={"Authorization": "Bearer abc.def.ghi"})
    assert resp.status_code == 401
    expired = emu.mint_user_token(oid=str(uuid.uuid4()), aud=emu.url, expires_in=-60)
    assert (
        http.get(f"{emu.api_url}/leads", headers={"Authorization": f"Bearer {expired}"}).status_code
        == 401
    )
    stranger = emu.mint_user_token(oid=str(uuid.uuid4()), aud=emu.url)
    resp = http.get(f"{emu.api_url}/leads", headers={"Authorization": f"Bearer {stranger}"})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "0x80072560"


# --- CRUD ---
def test_create_get_update_delete(api: Api, emu: DataverseEmulator) -> None:
    resp = api.call(
        "POST",
        "leads",
        json_body={"firstname": "Ada", "lastname": "Lovelace", "emailaddress1": "ada@crud.test"},
    )
    assert resp.status_code == 204 and resp.content == b""
    entity_id = resp.headers["OData-EntityId"]
    assert entity_id.startswith(f"{emu.api_url}/leads(")
    lead_id = entity_id[-37:-1]
    got = api.call("GET", f"leads({lead_id})?$select=fullname,emailaddress1")
    assert got.status_code == 200
    body = got.json()
    assert body["fullname"] == "Ada Lovelace" and body["leadid"] == lead_id
    assert body["@odata.etag"].startswith('W/"')
    assert body["@odata.context"].endswith("$metadata#leads(fullname,emailaddress1)/$entity")
    rep = api.call(
        "POST",
        "leads?$select=lastname",
        json_body={"lastname": "Rep"},
        headers={"Prefer": "return=representation"},
    )
    assert rep.status_code == 201 and rep.json()["lastname"] == "Rep"
    assert (
        api.call("PATCH", f"leads({lead_id})", json_body={"jobtitle": "Countess"}).status_code
        == 204
    )
    assert emu.get_record("lead", lead_id)["jobtitle"] == "Countess"
    too_long = api.call("PATCH", f"leads({lead_id})", json_body={"mobilephone": "1" * 21})
    assert too_long.status_code == 400 and "maximum allowed length of '20'" in too_long.text
    unknown = api.call("PATCH", f"leads({lead_id})", json_body={"nosuch": 1})
    assert unknown.status_code == 400
    assert api.call("DELETE", f"leads({lead_id})").status_code == 204
    missing = api.call("DELETE", f"leads({lead_id})")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "0x80040217", "message": f"lead With Id = {lead_id} Does Not Exist"}
    }
    assert api.call("GET", f"leads({lead_id})").status_code == 404


def test_select_filter_orderby_count(api: Api) -> None:
    marker = uuid.uuid4().hex[:8]
    for i, (first, score) in enumerate([("Bea", 10), ("al", 30), ("Cy", 20), ("Dee", None)]):
        body = {"firstname": first, "lastname": marker, "emailaddress1": f"{first}{i}@x.org"}
        if score is not None:
            body["ac_leadscore"] = score
        api.create("leads", body)
    base = f"leads?$select=firstname,ac_leadscore&$filter=lastname eq '{marker}'"
    rows = api.call("GET", f"{base} and ac_leadscore ge 20&$orderby=ac_leadscore desc").json()
    assert [r["firstname"] for r in rows["value"]] == ["al", "Cy"]
    assert set(rows["value"][0]) == {"@odata.etag", "firstname", "ac_leadscore", "leadid"}
    rows = api.call(
        "GET",
        f"{base} and (startswith(firstname,'B') or ac_leadscore eq null)"
        "&$orderby=firstname&$count=true",
    ).json()
    assert [r["firstname"] for r in rows["value"]] == ["Bea", "Dee"] and rows["@odata.count"] == 2
    rows = api.call("GET", f"{base} and not contains(emailaddress1,'x.org')").json()
    assert rows["value"] == []
    rows = api.call("GET", f"{base}&$orderby=firstname asc&$top=2").json()
    assert [r["firstname"] for r in rows["value"]] == ["al", "Bea"]
    bad = api.call("GET", "leads?$select=nosuchcolumn")
    assert bad.status_code == 400
    assert bad.json()["error"]["message"] == (
        "Could not find a property named 'nosuchcolumn' on type 'Microsoft.Dynamics.CRM.lead'."
    )
    assert api.call("GET", "leads?$filter=bogus eq 1").status_code == 400
    assert api.call("GET", "leads?$skip=1").status_code == 400
    created_after = api.call(
        "GET",
        f"leads?$filter=lastname eq '{marker}' and createdon gt 2020-01-01T00:00:00Z&$count=true",
    ).json()
    assert created_after["@odata.count"] == 4


def test_paging_with_next_link(api: Api) -> None:
    marker = uuid.uuid4().hex[:8]
    ids = [api.create("contacts", {"firstname": f"P{i}", "lastname": marker}) for i in range(5)]
    url = f"contacts?$select=fullname&$filter=lastname eq '{marker}'"
    seen: list[str] = []
    pages = 0
    resp = api.call("GET", url, headers={"Prefer": "odata.maxpagesize=2"})
    while True:
        assert resp.status_code == 200, resp.text
        assert resp.headers["Preference-Applied"] == "odata.maxpagesize=2"
        body = resp.json()
        pages += 1
        seen += [r["contactid"] for r in body["value"]]
        if "@odata.nextLink" not in body:
            break
        link = body["@odata.nextLink"]
        assert "$skiptoken=%3Ccookie%20pagenumber=%22" in link and "$skip=" not in link
        assert unquote(link.split("$skiptoken=")[1]).startswith(f'<cookie pagenumber="{pages + 1}"')
        resp = api.call("GET", link, headers={"Prefer": "odata.maxpagesize=2"})
    assert pages == 3 and seen == ids


def test_change_tracking_initial_and_delta(api: Api, emu: DataverseEmulator) -> None:
    track = {"Prefer": "odata.track-changes,odata.maxpagesize=5000"}
    initial = api.call("GET", "leads?$select=firstname,lastname", headers=track)
    assert initial.status_code == 200
    delta_link = initial.json()["@odata.deltaLink"]
    token = parse_qs(urlsplit(delta_link).query)["$deltatoken"][0]
    assert re.fullmatch(r"\d+!\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", token)
    assert "%21" in delta_link  # the '!' is URL-encoded like the documented sample
    doomed = api.create("leads", {"lastname": "Doomed"})
    added = api.create("leads", {"lastname": "Added"})
    api.call("PATCH", f"leads({added})", json_body={"firstname": "Now"})
    api.call("DELETE", f"leads({doomed})")
    delta = api.call("GET", delta_link, headers=track)
    assert delta.status_code == 200
    body = delta.json()
    assert body["@odata.context"].endswith("$metadata#leads(firstname,lastname)/$delta")
    assert [r.get("leadid") or r["id"] for r in body["value"]] == [added, doomed]
    assert body["value"][0]["firstname"] == "Now"
    assert body["value"][1] == {
        "@odata.context": f"{emu.api_url}/$metadata#leads/$deletedEntity",
        "id": doomed,
        "reason": "deleted",
    }
    again = api.call("GET", body["@odata.deltaLink"], headers=track).json()
    assert again["value"] == []
    refused = api.call("GET", "leads?$filter=lastname eq 'x'", headers=track)
    assert refused.status_code == 400
    assert "isn't supported when Change Tracking is enabled" in refused.json()["error"]["message"]
    garbage = api.call("GET", "leads?$deltatoken=nonsense", headers=track)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "0x80044352"
    emu.expire_delta_tokens()
    assert api.call("GET", body["@odata.deltaLink"], headers=track).status_code == 400
    fresh = api.call("GET", "leads?$select=lastname", headers=track).json()["@odata.deltaLink"]
    assert api.call("GET", fresh, headers=track).status_code == 200


# --- $batch ---
def _batch(api: Api, parts: str, prefer: str | None = None) -> requests.Response:
    headers = {"Content-Type": "multipart/mixed;boundary=batch_AAA123"}
    if prefer:
        headers["Prefer"] = prefer
    return api.call("POST", "$batch", data=parts.replace("\n", "\r\n").encode(), headers=headers)


def test_batch_with_content_id_reference(api: Api, emu: DataverseEmulator) -> None:
    root = emu.api_url
    marker = uuid.uuid4().hex[:8]
    body = f"""--batch_AAA123
Content-Type: multipart/mixed; boundary=changeset_BBB456

--changeset_BBB456
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST {root}/leads HTTP/1.1
Content-Type: application/json

{{"firstname":"aaa","lastname":"{marker}"}}
--changeset_BBB456
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST {root}/annotations HTTP/1.1
Content-Type: application/json

{{"subject":"Note","notetext":"hi","objectid_lead@odata.bind":"$1"}}
--changeset_BBB456
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 3

PATCH $1 HTTP/1.1
Content-Type: application/json

{{"jobtitle":"Patched via reference"}}
--changeset_BBB456--

--batch_AAA123
Content-Type: application/http
Content-Transfer-Encoding: binary

GET {root}/leads?$select=jobtitle&$filter=lastname%20eq%20'{marker}' HTTP/1.1
Accept: application/json

--batch_AAA123--
"""
    resp = _batch(api, body)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("multipart/mixed; boundary=batchresponse_")
    text = resp.text
    assert text.count("HTTP/1.1 204 No Content") == 3 and "HTTP/1.1 200 OK" in text
    assert re.search(r"--changesetresponse_[0-9a-f-]{36}\r\nContent-Type: application/http", text)
    assert "Content-ID: 1" in text and f"Location: {root}/leads(" in text
    lead_id = re.search(
        rf"OData-EntityId: {re.escape(root)}/leads\(([0-9a-f-]{{36}})\)", text
    ).group(1)
    assert emu.get_record("lead", lead_id)["jobtitle"] == "Patched via reference"
    notes = api.call("GET", f"leads({lead_id})/Lead_Annotation?$select=subject").json()["value"]
    assert [n["subject"] for n in notes] == ["Note"]
    payload = json.loads(
        text.split("HTTP/1.1 200 OK")[1].split("\r\n\r\n", 1)[1].split("\r\n--")[0]
    )
    assert payload["value"][0]["jobtitle"] == "Patched via reference"


def test_batch_changeset_is_atomic(api: Api, emu: DataverseEmulator) -> None:
    marker = uuid.uuid4().hex[:8]
    body = f"""--batch_AAA123
Content-Type: multipart/mixed; boundary=changeset_X

--changeset_X
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST leads HTTP/1.1
Content-Type: application/json

{{"lastname":"{marker}"}}
--changeset_X
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 2

POST leads HTTP/1.1
Content-Type: application/json

{{"parentcontactid@odata.bind":"$9"}}
--changeset_X--
--batch_AAA123
Content-Type: application/http
Content-Transfer-Encoding: binary

POST leads HTTP/1.1
Content-Type: application/json

{{"lastname":"{marker}-after"}}
--batch_AAA123--
"""
    resp = _batch(api, body)
    assert resp.status_code == 200
    assert "HTTP/1.1 400 Bad Request" in resp.text
    assert "Content-ID Reference: '$9' does not exist in the batch context." in resp.text
    assert emu.store.find("lead", lastname=marker) == []
    assert emu.store.find("lead", lastname=f"{marker}-after") == []  # stopped at the failure
    resp = _batch(api, body, prefer="odata.continue-on-error")
    assert len(emu.store.find("lead", lastname=f"{marker}-after")) == 1


# --- upsert and concurrency ---
def test_upsert_and_conditional_errors(api: Api, shared_dir: Path) -> None:
    new_id = str(uuid.uuid4())
    assert (
        api.call("PATCH", f"contacts({new_id})", json_body={"lastname": "Upserted"}).status_code
        == 204
    )
    assert api.call("GET", f"contacts({new_id})").json()["lastname"] == "Upserted"
    other = str(uuid.uuid4())
    no_create = api.call(
        "PATCH", f"contacts({other})", json_body={"lastname": "x"}, headers={"If-Match": "*"}
    )
    assert no_create.status_code == 404
    assert no_create.json()["error"]["message"] == f"contact With Id = {other} Does Not Exist"
    no_update = api.call(
        "PATCH", f"contacts({new_id})", json_body={"lastname": "y"}, headers={"If-None-Match": "*"}
    )
    assert no_update.status_code == 412
    assert no_update.json()["error"]["message"] == (
        "A record with matching key values already exists."
    )
    stale = api.call(
        "PATCH", f"contacts({new_id})", json_body={"lastname": "z"}, headers={"If-Match": 'W/"1"'}
    )
    assert stale.status_code == 412
    samples = shared_dir / "dataverse" / "webapi-samples"
    for resp, name in [
        (no_create, "error-upsert-prevent-create-404.json"),
        (no_update, "error-upsert-prevent-update-412.json"),
        (stale, "error-concurrency-412.json"),
    ]:
        sample = json.loads((samples / name).read_text())
        assert set(resp.json()) == set(sample) and set(resp.json()["error"]) == set(sample["error"])
    assert (
        stale.json()["error"]["message"]
        == json.loads((samples / "error-concurrency-412.json").read_text())["error"]["message"]
    )


def test_alternate_key_upsert(api: Api, emu: DataverseEmulator) -> None:
    emu.add_alternate_key("contact", ["ac_activecampaigncontactid"])
    resp = api.call(
        "PATCH", "contacts(ac_activecampaigncontactid='ac-77')", json_body={"lastname": "Keyed"}
    )
    assert resp.status_code == 204
    cid = resp.headers["OData-EntityId"][-37:-1]
    api.call("PATCH", "contacts(ac_activecampaigncontactid='ac-77')", json_body={"firstname": "K"})
    assert emu.get_record("contact", cid)["fullname"] == "K Keyed"
    assert api.call("GET", "contacts(emailaddress1='nobody@x')").status_code == 400


# --- service protection ---
def _user_headers(emu: DataverseEmulator) -> dict[str, str]:
    oid = str(uuid.uuid4())
    emu.add_system_user("Limit Tester", oid, "limits@x.test", ["Salesperson"])
    return {"Authorization": f"Bearer {emu.mint_user_token(oid=oid, aud=emu.url)}"}


def test_request_rate_limit(emu: DataverseEmulator, http: requests.Session) -> None:
    headers = _user_headers(emu)
    emu.set_limits(requests_per_window=3, window_seconds=2)
    try:
        for _ in range(3):
            assert http.get(f"{emu.api_url}/WhoAmI", headers=headers).status_code == 200
        resp = http.get(f"{emu.api_url}/WhoAmI", headers=headers)
        assert resp.status_code == 429
        assert 1 <= int(resp.headers["Retry-After"]) <= 2
        assert resp.json()["error"] == {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 3 over time window of 2 seconds.",
        }
    finally:
        emu.set_limits(requests_per_window=6000, window_seconds=300)


def test_concurrency_limit(
    api: Api, emu: DataverseEmulator, receiver: Receiver, http: requests.Session
) -> None:
    endpoint_id, _ = register_webhook(
        api, f"{receiver.url}/hook/200?delay=0.8", "Create", "account", mode=0
    )
    headers = _user_headers(emu)
    emu.set_limits(max_concurrent=1)
    try:
        slow = threading.Thread(
            target=lambda: http.post(
                f"{emu.api_url}/accounts", json={"name": "Slow"}, headers=headers
            )
        )
        slow.start()
        time.sleep(0.3)
        resp = http.get(f"{emu.api_url}/WhoAmI", headers=headers)
        slow.join()
        assert resp.status_code == 429 and resp.headers["Retry-After"] == "1"
        assert resp.json()["error"] == {
            "code": "0x80072326",
            "message": "Number of concurrent requests exceeded the limit of 1.",
        }
        assert http.get(f"{emu.api_url}/WhoAmI", headers=headers).status_code == 200
    finally:
        emu.set_limits(max_concurrent=52)
        api.call("DELETE", f"serviceendpoints({endpoint_id})")


# --- webhooks ---
def test_webhook_registration_rows(api: Api, receiver: Receiver) -> None:
    endpoint_id, step_id = register_webhook(api, f"{receiver.url}/hook/200", "Update", "lead")
    endpoint = api.call("GET", f"serviceendpoints({endpoint_id})").json()
    assert endpoint["isauthvalueset"] is True and endpoint.get("authvalue") is None
    listed = api.call(
        "GET", "serviceendpoints?$filter=contract eq 8&$select=serviceendpointid,name,authtype,url"
    ).json()["value"]
    assert endpoint_id in [e["serviceendpointid"] for e in listed]
    steps = api.call(
        "GET",
        f"serviceendpoints({endpoint_id})/serviceendpoint_sdkmessageprocessingstep"
        "?$select=name,mode,_eventhandler_value",
    ).json()["value"]
    assert [s["sdkmessageprocessingstepid"] for s in steps] == [step_id]
    assert steps[0]["_eventhandler_value"] == endpoint_id
    assert api.call("DELETE", f"serviceendpoints({endpoint_id})").status_code == 204
    assert api.call("GET", f"sdkmessageprocessingsteps({step_id})").status_code == 404


def test_webhook_update_async_payload(api: Api, emu: DataverseEmulator, receiver: Receiver) -> None:
    endpoint_id, step_id = register_webhook(
        api,
        f"{receiver.url}/hook/200",
        "Update",
        "contact",
        authvalue="k3y/+&",
        filtering="firstname,lastname",
        images=[
            {
                "name": "pre",
                "entityalias": "PreImage",
                "imagetype": 0,
                "attributes": "firstname,emailaddress1",
            }
        ],
    )
    cid = api.create(
        "contacts", {"firstname": "James", "lastname": "Glynn", "emailaddress1": "james@x.test"}
    )
    resp = api.call("PATCH", f"contacts({cid})?tag=bridge-echo", json_body={"firstname": "Jim"})
    assert resp.status_code == 204
    delivery = wait_deliveries(emu, step_id, 1)[0]
    assert delivery["status"] == 200 and delivery["attempts"] == 1
    assert delivery["url"] == f"{receiver.url}/hook/200?code=k3y%2F%2B%26"
    got = next(r for r in receiver.requests if r["body"] == delivery["body"])
    assert got["args"]["code"] == "k3y/+&"
    headers = {k.lower(): v for k, v in got["headers"].items()}
    assert headers["x-ms-dynamics-organization"] == urlsplit(emu.url).netloc
    assert headers["x-ms-dynamics-entity-name"] == "contact"
    assert headers["x-ms-dynamics-request-name"] == "Update"
    assert headers["content-type"] == "application/json"
    assert "x-ms-dynamics-msg-size-exceeded" not in headers
    raw = delivery["body"].decode()
    assert re.search(r'"modifiedon","value":"\\/Date\(\d+\)\\/"', raw)
    assert '"__type":"Entity:http:\\/\\/schemas.microsoft.com\\/xrm\\/2011\\/Contracts"' in raw
    body = body_of(delivery)
    assert list(body) == sorted(body)
    assert body["CorrelationId"] == headers["x-ms-correlation-request-id"]
    target = kv(body["InputParameters"])["Target"]
    assert [a["key"] for a in target["Attributes"]] == [
        "firstname",
        "contactid",
        "fullname",
        "yomifullname",
        "modifiedon",
        "modifiedby",
        "modifiedonbehalfby",
    ]
    assert kv(target["Attributes"])["modifiedby"]["LogicalName"] == "systemuser"
    assert body["MessageName"] == "Update" and body["Mode"] == 1 and body["Stage"] == 40
    assert body["IsInTransaction"] is False and body["Depth"] == 1
    assert body["UserId"] == body["InitiatingUserId"] == emu.app_user_id(CLIENT_ID)
    assert body["OrganizationId"] == emu.org_id and body["PrimaryEntityId"] == cid
    assert body["OwningExtension"]["Id"] == step_id
    assert body["OwningExtension"]["LogicalName"] == "sdkmessageprocessingstep"
    assert kv(body["SharedVariables"])["tag"] == "bridge-echo"
    post = kv(body["PostEntityImages"])["AsynchronousStepPrimaryName"]
    assert kv(post["Attributes"]) == {"fullname": "Jim Glynn", "contactid": cid}
    assert "__type" not in post
    pre = kv(body["PreEntityImages"])["PreImage"]
    assert kv(pre["Attributes"]) == {"firstname": "James", "emailaddress1": "james@x.test"}
    parent = body["ParentContext"]
    assert parent["Stage"] == 30 and parent["OperationId"] == body["OperationId"]
    assert [a["key"] for a in kv(parent["InputParameters"])["Target"]["Attributes"]] == [
        "firstname",
        "contactid",
    ]
    # filteringattributes: an email-only change does not trigger this step
    api.call("PATCH", f"contacts({cid})", json_body={"emailaddress1": "new@x.test"})
    api.call("PATCH", f"contacts({cid})", json_body={"lastname": "Glynn2"})
    second = wait_deliveries(emu, step_id, 2)
    time.sleep(0.2)
    assert len([d for d in emu.webhook_deliveries if d["step_id"] == step_id]) == 2
    assert (
        kv(kv(body_of(second[1])["InputParameters"])["Target"]["Attributes"])["lastname"]
        == "Glynn2"
    )
    api.call("DELETE", f"serviceendpoints({endpoint_id})")


def test_webhook_create_sync_and_delete(
    api: Api, emu: DataverseEmulator, receiver: Receiver
) -> None:
    endpoint_id, create_step = register_webhook(
        api, f"{receiver.url}/hook/200", "Create", "lead", mode=0
    )
    _, delete_step = register_webhook(
        api,
        f"{receiver.url}/hook/204",
        "Delete",
        "lead",
        mode=1,
        images=[
            {"name": "pre", "entityalias": "Before", "imagetype": 0, "attributes": "emailaddress1"}
        ],
    )
    lead_id = emu.create_record(
        "lead", {"lastname": "Sync", "emailaddress1": "s@x.test", "leadsourcecode": 8}, tag="py"
    )
    body = body_of(wait_deliveries(emu, create_step, 1)[0])
    assert body["Mode"] == 0 and body["IsInTransaction"] is True
    assert kv(body["OutputParameters"]) == {"id": lead_id}
    assert body["UserId"] == emu.org.system_user_id
    attrs = kv(kv(body["InputParameters"])["Target"]["Attributes"])
    assert attrs["leadsourcecode"] == {
        "__type": "OptionSetValue:http://schemas.microsoft.com/xrm/2011/Contracts",
        "Value": 8,
    }
    assert attrs["ownerid"]["__type"].startswith("EntityReference:")
    assert body["PostEntityImages"] == []  # sync steps get no AsynchronousStepPrimaryName
    emu.delete_record("lead", lead_id)
    deleted = body_of(wait_deliveries(emu, delete_step, 1)[0])
    target = kv(deleted["InputParameters"])["Target"]
    assert target["__type"].startswith("EntityReference:") and target["Id"] == lead_id
    assert kv(kv(deleted["PreEntityImages"])["Before"]["Attributes"]) == {
        "emailaddress1": "s@x.test"
    }
    api.call("DELETE", f"serviceendpoints({endpoint_id})")


def test_sync_webhook_failure_rolls_back(
    api: Api, emu: DataverseEmulator, receiver: Receiver
) -> None:
    endpoint_id, step_id = register_webhook(
        api, f"{receiver.url}/hook/500", "Create", "contact", mode=0
    )
    marker = uuid.uuid4().hex[:8]
    resp = api.call("POST", "contacts", json_body={"lastname": marker})
    assert resp.status_code == 400 and set(resp.json()["error"]) == {"code", "message"}
    assert emu.store.find("contact", lastname=marker) == []
    assert wait_deliveries(emu, step_id, 1)[0]["attempts"] == 1
    api.call("DELETE", f"serviceendpoints({endpoint_id})")


def test_retry_once_on_503_only(api: Api, emu: DataverseEmulator, receiver: Receiver) -> None:
    ep503, step503 = register_webhook(api, f"{receiver.url}/hook/503", "Update", "account")
    ep500, step500 = register_webhook(api, f"{receiver.url}/hook/500", "Update", "account")
    account = api.create("accounts", {"name": "Retry Co"})
    api.call("PATCH", f"accounts({account})", json_body={"telephone1": "555"})
    d503 = wait_deliveries(emu, step503, 1)[0]
    d500 = wait_deliveries(emu, step500, 1)[0]
    assert (d503["status"], d503["attempts"]) == (503, 2)
    assert (d500["status"], d500["attempts"]) == (500, 1)
    jobs = api.call(
        "GET",
        f"asyncoperations?$filter=statuscode eq 31 and _owningextensionid_value"
        f" eq {step500}&$select=name,friendlymessage,statuscode",
    ).json()["value"]
    assert len(jobs) == 1 and "500" in jobs[0]["friendlymessage"]
    for ep in (ep503, ep500):
        api.call("DELETE", f"serviceendpoints({ep})")


def test_header_and_query_string_auth(api: Api, emu: DataverseEmulator, receiver: Receiver) -> None:
    settings = '<settings><setting name="X-Bridge-Key" value="abc" /></settings>'
    ep1, step_h = register_webhook(
        api, f"{receiver.url}/hook/200", "Create", "annotation", authtype=5, authvalue=settings
    )
    ep2, step_q = register_webhook(
        api,
        f"{receiver.url}/hook/200",
        "Create",
        "annotation",
        authtype=6,
        authvalue=settings.replace("X-Bridge-Key", "k"),
    )
    api.create("annotations", {"subject": "auth"})
    assert wait_deliveries(emu, step_h, 1)[0]["headers"]["X-Bridge-Key"] == "abc"
    assert wait_deliveries(emu, step_q, 1)[0]["url"].endswith("/hook/200?k=abc")
    for ep in (ep1, ep2):
        api.call("DELETE", f"serviceendpoints({ep})")


def test_payload_over_256kb_is_stripped(
    api: Api, emu: DataverseEmulator, receiver: Receiver
) -> None:
    endpoint_id, step_id = register_webhook(
        api,
        f"{receiver.url}/hook/200",
        "Create",
        "annotation",
        images=[{"name": "post", "entityalias": "Post", "imagetype": 1}],
    )
    lead = api.create("leads", {"lastname": "Big"})
    api.create(
        "annotations",
        {"subject": "big", "notetext": "x" * 95000, "objectid_lead@odata.bind": f"/leads({lead})"},
    )
    delivery = wait_deliveries(emu, step_id, 1)[0]
    assert delivery["headers"]["x-ms-dynamics-msg-size-exceeded"]
    body = body_of(delivery)
    for key in ("ParentContext", "InputParameters", "PreEntityImages", "PostEntityImages"):
        assert key not in body
    assert body["PrimaryEntityName"] == "annotation" and body["PrimaryEntityId"]
    api.call("DELETE", f"serviceendpoints({endpoint_id})")


# --- metadata, roles, control endpoints ---
def test_attribute_metadata(api: Api) -> None:
    attrs = api.call(
        "GET",
        "EntityDefinitions(LogicalName='lead')/Attributes"
        "?$select=LogicalName,AttributeType,IsCustomAttribute",
    ).json()["value"]
    by_name = {a["LogicalName"]: a for a in attrs}
    assert by_name["ac_activecampaigncontactid"]["IsCustomAttribute"] is True
    assert by_name["lastname"]["AttributeType"] == "String"
    last = api.call(
        "GET", "EntityDefinitions(LogicalName='lead')/Attributes(LogicalName='lastname')"
    ).json()
    assert last["RequiredLevel"]["Value"] == "ApplicationRequired" and last["MaxLength"] == 50
    picklists = api.call(
        "GET",
        "EntityDefinitions(LogicalName='contact')/Attributes/Microsoft."
        "Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName"
        "&$expand=OptionSet",
    ).json()["value"]
    options = {p["LogicalName"]: p["OptionSet"]["Options"] for p in picklists}
    assert {o["Value"] for o in options["preferredcontactmethodcode"]} == {1, 2, 3, 4, 5}
    status = api.call(
        "GET",
        "EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics."
        "CRM.StatusAttributeMetadata?$expand=OptionSet",
    ).json()["value"][0]
    assert {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]}[3] == 1


def test_roles_association(api: Api, emu: DataverseEmulator, http: requests.Session) -> None:
    oid = str(uuid.uuid4())
    resp = http.post(
        f"{emu.url}/_emulator/users",
        json={
            "fullname": "Role Person",
            "aad_object_id": oid,
            "domainname": "rp@x.test",
            "roles": ["ActiveCampaign User"],
        },
    )
    user_id = resp.json()["systemuserid"]
    found = api.call(
        "GET",
        f"systemusers?$filter=azureactivedirectoryobjectid eq {oid}&$select=fullname,domainname",
    ).json()["value"]
    assert [u["systemuserid"] for u in found] == [user_id]
    path = f"systemusers({user_id})/systemuserroles_association"
    roles = api.call("GET", f"{path}?$select=name,roleid").json()["value"]
    assert [r["name"] for r in roles] == ["ActiveCampaign User"]
    admin = api.call("GET", "roles?$filter=name eq 'ActiveCampaign Admin'&$select=roleid").json()[
        "value"
    ][0]["roleid"]
    assert (
        api.call(
            "POST", f"{path}/$ref", json_body={"@odata.id": f"{emu.api_url}/roles({admin})"}
        ).status_code
        == 204
    )
    assert len(api.call("GET", path).json()["value"]) == 2
    assert api.call("DELETE", f"{path}({admin})/$ref").status_code == 204
    assert [r["name"] for r in api.call("GET", path).json()["value"]] == ["ActiveCampaign User"]
    tok = http.post(f"{emu.url}/_emulator/user-token", json={"oid": oid, "aud": emu.url}).json()[
        "access_token"
    ]
    who = http.get(f"{emu.api_url}/WhoAmI", headers={"Authorization": f"Bearer {tok}"}).json()
    assert who["UserId"] == user_id
    log = http.get(f"{emu.url}/_emulator/request-log").json()
    assert log[-1]["path"].endswith("/WhoAmI") and log[-1]["caller"] == oid


def test_control_endpoints_drive_the_emulator(
    emu: DataverseEmulator, http: requests.Session
) -> None:
    resp = http.post(
        f"{emu.url}/_emulator/records/contact", json={"attributes": {"lastname": "Ctl"}, "tag": "t"}
    )
    cid = resp.json()["id"]
    assert http.get(f"{emu.url}/_emulator/records/contact/{cid}").json()["fullname"] == "Ctl"
    limits = http.post(f"{emu.url}/_emulator/limits", json={"max_concurrent": 52}).json()
    assert limits["requests_per_window"] == 6000
    deliveries = http.get(f"{emu.url}/_emulator/webhook-deliveries").json()
    assert all(isinstance(d["body"], str) for d in deliveries)


def test_cli_prints_connection_json(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulators.dataverse", "--port", "0", "--state-dir", str(tmp_path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        assert info["url"].startswith("https://127.0.0.1:")
        config = requests.get(
            f"{info['url']}/{info['tenant_id']}/v2.0/.well-known/openid-configuration",
            verify=info["ca_bundle"],
            timeout=5,
        )
        assert config.json()["token_endpoint"].endswith("/oauth2/v2.0/token")
        assert info["client_id"] and info["client_secret"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)


# --- conformance with the real samples ---
NEWER_KEYS = {
    "InitiatingUserAgent",
    "InitiatingUserAzureActiveDirectoryObjectId",
    "UserAzureActiveDirectoryObjectId",
}


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def test_contact_update_body_matches_ms_docs_sample(
    api: Api, emu: DataverseEmulator, receiver: Receiver, shared_dir: Path
) -> None:
    sample = json.loads(
        (
            shared_dir
            / "dataverse"
            / "webhook-samples"
            / "ms-docs-use-webhooks-contact-update-async.json"
        ).read_text()
    )
    endpoint_id, step_id = register_webhook(
        api, f"{receiver.url}/hook/200", "Update", "contact", filtering="firstname,lastname"
    )
    cid = api.create("contacts", {"firstname": "James", "lastname": "Glynn (sample)"})
    api.call("PATCH", f"contacts({cid})", json_body={"firstname": "James"})
    body = body_of(wait_deliveries(emu, step_id, 1)[0])
    assert set(body) - NEWER_KEYS == set(sample)
    for key, value in sample.items():
        if key == "RequestId":  # null in the 2017 sample, a GUID in the 2024 ones
            continue
        assert _type_name(body[key]) == _type_name(value), key
    for key in ("ParentContext",):
        assert set(body[key]) - NEWER_KEYS == set(sample[key])
    ours, theirs = kv(body["InputParameters"])["Target"], kv(sample["InputParameters"])["Target"]
    assert list(ours) == list(theirs)
    assert [a["key"] for a in ours["Attributes"]] == [a["key"] for a in theirs["Attributes"]]
    assert set(body["OwningExtension"]) == set(sample["OwningExtension"])
    image = kv(body["PostEntityImages"])["AsynchronousStepPrimaryName"]
    assert list(image) == list(kv(sample["PostEntityImages"])["AsynchronousStepPrimaryName"])
    api.call("DELETE", f"serviceendpoints({endpoint_id})")


def test_paging_and_tracking_shapes_match_samples(api: Api, shared_dir: Path) -> None:
    samples = shared_dir / "dataverse" / "webapi-samples"
    page1 = json.loads((samples / "paging-page1-response.json").read_text())
    for i in range(3):
        api.create("contacts", {"lastname": f"shape{i}"})
    ours = api.call(
        "GET", "contacts?$select=fullname", headers={"Prefer": "odata.maxpagesize=2"}
    ).json()
    assert list(ours) == list(page1)
    assert set(ours["value"][0]) == set(page1["value"][0])
    ours_cookie = unquote(ours["@odata.nextLink"].split("$skiptoken=")[1])
    their_cookie = unquote(page1["@odata.nextLink"].split("$skiptoken=")[1])
    pattern = r'<cookie pagenumber="\d+" pagingcookie="[^"]+" istracking="(True|False)" />'
    assert re.fullmatch(pattern, ours_cookie) and re.fullmatch(pattern, their_cookie)
    initial = json.loads((samples / "change-tracking-initial-response.json").read_text())
    tracked = api.call(
        "GET", "contacts?$select=fullname", headers={"Prefer": "odata.track-changes"}
    ).json()
    assert set(tracked) == set(initial)
    delta_sample = json.loads((samples / "change-tracking-delta-response.json").read_text())
    cid = api.create("contacts", {"lastname": "delta-shape"})
    gone = api.create("contacts", {"lastname": "delta-gone"})
    api.call("DELETE", f"contacts({gone})")
    delta = api.call("GET", tracked["@odata.deltaLink"]).json()
    assert set(delta) == set(delta_sample)
    assert set(delta["value"][-1]) == set(delta_sample["value"][-1])
    assert cid in [r.get("contactid") for r in delta["value"]]
