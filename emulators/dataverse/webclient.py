"""The Dynamics 365 web client, emulated: web resources hosted the way the Unified Interface does.

Served under the emulated org's own origin (``emu.url``), so pages, ``Xrm.WebApi`` and the
web resources share one origin exactly as in Dynamics:

``GET /WebResources/<name>``
    A web resource of the solution, e.g. ``ac_/html/settings.html``. The name maps to a file
    the way ``solution/`` packs it (``ac_/<path>`` → ``webresources/<path>``); only names that
    have a ``.data.xml`` in ``solution/src/WebResources/`` exist.
``GET /main.aspx?pagetype=webresource&webresourceName=<name>[&data=<text>]``
    The app shell: a site map of the ActiveCampaign app (read from the solution's
    AppModuleSiteMap.xml), a global ``Xrm`` and the web resource in an iframe that gets
    ``?data=<text>``. Add ``&tokenhost=0`` to leave out ``window.ActiveCampaignBridgeHost``
    (below), so the web resource signs in with MSAL.js as it does in real Dynamics.
``GET /main.aspx?pagetype=entityrecord&etn=lead&id=<guid>``
    A minimal record form: a few columns, the command bar buttons the solution's
    RibbonDiff.xml declares for the main form (``JavaScriptFunction`` with its ``CrmParameter``
    ``PrimaryControl`` → a form context, ``StringParameter`` literals, ``CustomRule`` enable
    rules) and the ``ac_/html/timeline.html`` web resource on the form with
    ``?id={GUID}&typename=lead&type=4``.
``GET /_emulator/signin?oid=<aad object id>&next=<url>``
    Signs the browser in as that systemuser (a cookie); without ``oid`` it lists the users.
    ``/_emulator/signout`` forgets it.
``GET /_emulator/webclient/token?resource=bridge|dataverse``
    A user access token for the signed-in person (cookie), minted by the emulator's Entra
    issuer: ``bridge`` → audience ``emu.bridge_client_id`` (what MSAL.js would get for the
    bridge's app registration), ``dataverse`` → the org URL (what the web client uses for
    the Web API).

The shell's ``Xrm`` (``webclient_host.js``) offers ``Utility.getGlobalContext()``
(``getClientUrl``, ``userSettings.userId/userName/roles/securityRoles``, ``getVersion``),
``Navigation.navigateTo`` (a web resource in a dialog iframe; resolves on close; a page in
the dialog closes it with ``window.close()``), ``openAlertDialog``, ``openConfirmDialog``,
``openForm``, ``openWebResource`` and ``WebApi.retrieveMultipleRecords/retrieveRecord/
createRecord/updateRecord/deleteRecord`` against this emulator's real Web API with the
signed-in user's token. ``window.ActiveCampaignBridgeHost.getToken()`` returns a
Promise of a bridge token (the dev-host stand-in for MSAL.js).
"""

from __future__ import annotations

import html
import json
import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from flask import Flask, Response, abort, jsonify, redirect, request
from lxml import etree

if TYPE_CHECKING:
    from . import DataverseEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
WEBRESOURCES_DIR = REPO_ROOT / "webresources"
SOLUTION_SRC = REPO_ROOT / "solution" / "src"
NAME_ROOT = "ac_/"
COOKIE = "emu_signin"
HOST_JS = Path(__file__).with_name("webclient_host.js")
APP_TITLE = "ActiveCampaign"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def webresource_file(name: str) -> Path | None:
    """The file of web resource ``name`` (``ac_/html/x.html``), or None if the solution lacks it."""
    if not name.startswith(NAME_ROOT) or ".." in name.split("/"):
        return None
    relative = name[len(NAME_ROOT) :]
    path = (WEBRESOURCES_DIR / relative).resolve()
    described = SOLUTION_SRC / "WebResources" / f"{name}.data.xml"
    if WEBRESOURCES_DIR.resolve() not in path.parents or not path.is_file():
        return None
    return path if described.is_file() else None


def sitemap() -> list[dict[str, Any]]:
    """Groups of the app's site map: ``[{"title", "pages": [{"title", "webresource"}]}]``."""
    path = SOLUTION_SRC / "AppModuleSiteMaps" / "ac_ActiveCampaign" / "AppModuleSiteMap.xml"
    if not path.is_file():
        return []
    groups = []
    for group in etree.parse(str(path)).iter("Group"):
        title = group.find("Titles/Title")
        pages = []
        for sub in group.iter("SubArea"):
            url = sub.get("Url", "")
            sub_title = sub.find("Titles/Title")
            if url.startswith("$webresource:"):
                pages.append(
                    {
                        "title": sub_title.get("Title") if sub_title is not None else sub.get("Id"),
                        "webresource": url.removeprefix("$webresource:"),
                    }
                )
        groups.append({"title": title.get("Title") if title is not None else "", "pages": pages})
    return groups


def form_commands(entity: str) -> list[dict[str, Any]]:
    """Main-form command bar buttons of ``entity`` from its RibbonDiff.xml, in sequence order."""
    path = SOLUTION_SRC / "Entities" / entity.capitalize() / "RibbonDiff.xml"
    if not path.is_file():
        return []
    root = etree.parse(str(path)).getroot()
    labels = {
        loc.get("Id"): (loc.find("Titles/Title").get("description") or "")
        for loc in root.iter("LocLabel")
    }
    rules: dict[str, list[dict[str, str]]] = {}
    for rule in root.iter("EnableRule"):
        rules[rule.get("Id")] = [
            {"library": c.get("Library", ""), "function": c.get("FunctionName", "")}
            for c in rule.iter("CustomRule")
        ]
    commands = {}
    for command in root.iter("CommandDefinition"):
        function = command.find("Actions/JavaScriptFunction")
        if function is None:
            continue
        params = []
        for param in function:
            if not isinstance(param.tag, str):
                continue
            params.append({"kind": param.tag, "value": param.get("Value", "")})
        enable = []
        for ref in command.iter("EnableRule"):
            enable += rules.get(ref.get("Id"), [])
        commands[command.get("Id")] = {
            "library": function.get("Library", ""),
            "function": function.get("FunctionName", ""),
            "parameters": params,
            "enable_rules": enable,
        }
    buttons = []
    for action in root.iter("CustomAction"):
        if not action.get("Location", "").startswith(f"Mscrm.Form.{entity}."):
            continue
        for button in action.iter("Button"):
            command = commands.get(button.get("Command", ""))
            if command is None:
                continue
            label_ref = button.get("LabelText", "").removeprefix("$LocLabels:")
            buttons.append(
                {
                    "id": button.get("Id"),
                    "label": labels.get(label_ref, label_ref),
                    "sequence": int(button.get("Sequence", "0")),
                    **command,
                }
            )
    return sorted(buttons, key=lambda b: b["sequence"])


def _page(title: str, body: str, context: dict[str, Any] | None = None) -> Response:
    script = ""
    if context is not None:
        payload = json.dumps(context).replace("</", "<\\/")
        script = (
            f'<script>window.__EMULATED_WEB_CLIENT__ = {payload};</script>\n'
            '<script src="/_emulator/webclient/host.js"></script>'
        )
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_SHELL_CSS}</style>
{script}
</head><body>{body}</body></html>"""
    return Response(text, content_type="text/html; charset=utf-8")


_SHELL_CSS = """
body{margin:0;font-family:"Segoe UI",Arial,sans-serif;background:#f3f2f1;color:#242424;
 display:flex;flex-direction:column;height:100vh}
.emu-top{background:#002050;color:#fff;display:flex;align-items:center;gap:16px;padding:0 16px;
 height:48px;flex:none}
.emu-top a{color:#fff}.emu-top .emu-app{font-weight:600}.emu-top .emu-user{margin-left:auto}
.emu-body{display:flex;flex:1;min-height:0}
.emu-nav{width:210px;background:#fff;border-right:1px solid #e1dfdd;padding:8px 0;flex:none;
 overflow:auto}
.emu-nav h2{font-size:12px;text-transform:uppercase;color:#605e5c;margin:12px 16px 4px}
.emu-nav a{display:block;padding:6px 16px;color:#242424;text-decoration:none;font-size:14px}
.emu-nav a[aria-current=page]{background:#edebe9;font-weight:600;border-left:3px solid #0f6cbd}
.emu-main{flex:1;display:flex;flex-direction:column;min-width:0}
.emu-main iframe{flex:1;border:0;background:#fff;width:100%}
.emu-commandbar{display:flex;gap:4px;padding:6px 12px;background:#fff;
 border-bottom:1px solid #e1dfdd}
.emu-commandbar button{background:none;border:1px solid transparent;padding:6px 10px;
 cursor:pointer;font:inherit}
.emu-commandbar button:hover:not(:disabled){background:#f3f2f1}
.emu-form{padding:12px 16px;background:#fff;display:grid;grid-template-columns:repeat(3,1fr);
 gap:8px}
.emu-form label{display:flex;flex-direction:column;font-size:12px;color:#605e5c}
.emu-form input{font:inherit;padding:4px;border:1px solid #c8c6c4;color:#242424}
.emu-tab{flex:1;display:flex;flex-direction:column;margin:12px 16px;border:1px solid #e1dfdd}
.emu-overlay{position:fixed;inset:0;background:rgba(0,0,0,.4);display:flex;align-items:center;
 justify-content:center;z-index:10}
.emu-dialog{background:#fff;display:flex;flex-direction:column;box-shadow:0 8px 32px rgba(0,0,0,.3)}
.emu-dialog header{display:flex;align-items:center;padding:8px 12px;border-bottom:1px solid #e1dfdd}
.emu-dialog header h2{font-size:16px;margin:0;flex:1}
.emu-dialog iframe{border:0;flex:1}
.emu-dialog .emu-text{padding:16px 20px}
.emu-dialog footer{display:flex;gap:8px;justify-content:flex-end;padding:12px 20px}
.emu-dialog footer button{padding:6px 16px;font:inherit;cursor:pointer}
.emu-signin{padding:24px}.emu-signin li{margin:6px 0}
"""


def _current_user(emu: DataverseEmulator) -> dict[str, Any] | None:
    oid = request.cookies.get(COOKIE, "")
    user = emu.org.user_by_aad(oid) if oid else None
    if user is None or user.get("isdisabled"):
        return None
    return user


def _user_roles(emu: DataverseEmulator, user_id: str) -> list[dict[str, str]]:
    ids = emu.store.associated("systemuserroles_association", user_id, from_left=True)
    roles = []
    for rid in ids:
        row = emu.store.get("role", rid)
        if row is not None:
            roles.append({"id": rid, "name": row.get("name") or ""})
    return sorted(roles, key=lambda r: r["name"])


def _context(emu: DataverseEmulator, user: dict[str, Any]) -> dict[str, Any]:
    uid = user["systemuserid"]
    return {
        "clientUrl": emu.url,
        "apiVersion": "9.2",
        "version": "9.2.24074.00000",
        "orgUniqueName": emu.org_name,
        "organizationId": emu.org_id,
        "tenantId": emu.tenant_id,
        "userId": uid,
        "userName": user.get("fullname") or "",
        "roles": _user_roles(emu, uid),
        "entitySets": {name: t.entity_set for name, t in emu.store.tables.items()},
        "primaryIds": {name: t.primary_id for name, t in emu.store.tables.items()},
    }


def _signin_redirect() -> Response:
    return redirect("/_emulator/signin?" + urlencode({"next": request.full_path}))


def _topbar(emu: DataverseEmulator, user: dict[str, Any]) -> str:
    return (
        '<header class="emu-top"><span>Dynamics 365</span>'
        f'<span class="emu-app">{APP_TITLE}</span>'
        f'<span class="emu-user">{html.escape(user.get("fullname") or "")} '
        f'(<a href="/_emulator/signout">sign out</a>)</span></header>'
    )


def _webresource_shell(emu: DataverseEmulator, user: dict[str, Any]) -> Response:
    name = request.args.get("webresourceName", "")
    if webresource_file(name) is None:
        abort(404)
    query = {}
    if "data" in request.args:
        query["data"] = request.args["data"]
    src = f"/WebResources/{quote(name)}" + (f"?{urlencode(query)}" if query else "")
    nav = []
    for group in sitemap():
        nav.append(f"<h2>{html.escape(group['title'])}</h2>")
        for page in group["pages"]:
            current = ' aria-current="page"' if page["webresource"] == name else ""
            href = "/main.aspx?" + urlencode(
                {"pagetype": "webresource", "webresourceName": page["webresource"]}
            )
            nav.append(f'<a href="{html.escape(href)}"{current}>{html.escape(page["title"])}</a>')
    body = (
        _topbar(emu, user)
        + '<div class="emu-body"><nav class="emu-nav" aria-label="Site map">'
        + "".join(nav)
        + '</nav><main class="emu-main">'
        + f'<iframe id="WebResource" name="WebResource" title="{html.escape(name)}" '
        + f'src="{html.escape(src)}"></iframe></main></div>'
    )
    context = _context(emu, user)
    context["tokenHost"] = request.args.get("tokenhost") != "0"
    return _page(f"{APP_TITLE} - Dynamics 365", body, context)


_FORM_COLUMNS = ("firstname", "lastname", "emailaddress1", "companyname", "telephone1", "jobtitle")


def _record_shell(emu: DataverseEmulator, user: dict[str, Any]) -> Response:
    entity = request.args.get("etn", "")
    table = emu.store.tables.get(entity)
    rid = request.args.get("id", "").strip("{}").lower()
    row = emu.store.get(entity, rid) if table is not None else None
    if table is None or row is None:
        abort(404)
    fields = "".join(
        f'<label>{html.escape(col)}<input readonly name="{col}" '
        f'value="{html.escape(str(row.get(col) or ""))}"></label>'
        for col in _FORM_COLUMNS
        if col in table.columns
    )
    timeline = "ac_/html/timeline.html"
    tab = ""
    if webresource_file(timeline) is not None:
        src = f"/WebResources/{timeline}?" + urlencode(
            {"id": "{" + rid.upper() + "}", "typename": entity, "type": table.object_type_code}
        )
        tab = (
            '<section class="emu-tab" aria-label="Marketing activity">'
            f'<iframe id="WebResource_timeline" title="Marketing activity" '
            f'src="{html.escape(src)}"></iframe></section>'
        )
    context = _context(emu, user)
    context["form"] = {
        "entityName": entity,
        "id": rid,
        "primaryName": row.get(table.primary_name) or "",
        "attributes": {
            col: row.get(col) for col in _FORM_COLUMNS if col in table.columns
        },
        "commands": form_commands(entity),
    }
    body = (
        _topbar(emu, user)
        + '<div class="emu-body"><main class="emu-main">'
        + '<div class="emu-commandbar" role="toolbar" aria-label="Commands" id="emu-commandbar">'
        + "</div>"
        + '<h1 style="margin:8px 16px;font-size:20px">'
        + html.escape(str(row.get(table.primary_name) or ""))
        + "</h1>"
        + f'<form class="emu-form" aria-label="{html.escape(entity)} form">{fields}</form>'
        + tab
        + "</main></div>"
    )
    return _page(f"{row.get(table.primary_name) or entity} - Dynamics 365", body, context)


def register_webclient(app: Flask, emu: DataverseEmulator) -> None:
    """Add the web client routes (see the module docstring) to the emulator's Flask app."""

    @app.get("/WebResources/<path:name>")
    def web_resource(name: str) -> Response:
        path = webresource_file(name)
        if path is None:
            abort(404)
        content_type = _TYPES.get(path.suffix) or (
            mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        )
        resp = Response(path.read_bytes(), content_type=content_type)
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    @app.get("/main.aspx")
    def main_aspx() -> Response:
        user = _current_user(emu)
        if user is None:
            return _signin_redirect()
        pagetype = request.args.get("pagetype", "")
        if pagetype == "webresource":
            return _webresource_shell(emu, user)
        if pagetype == "entityrecord":
            return _record_shell(emu, user)
        first = next((p for g in sitemap() for p in g["pages"]), None)
        if first is None:
            abort(404)
        return redirect(
            "/main.aspx?"
            + urlencode({"pagetype": "webresource", "webresourceName": first["webresource"]})
        )

    @app.get("/_emulator/webclient/host.js")
    def host_js() -> Response:
        return Response(
            HOST_JS.read_text(encoding="utf-8"),
            content_type="application/javascript; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    @app.get("/_emulator/signin")
    def signin() -> Response:
        oid = request.args.get("oid", "").strip().lower()
        target = request.args.get("next") or "/main.aspx"
        if not target.startswith("/") or target.startswith("//"):
            target = "/main.aspx"
        if oid:
            user = emu.org.user_by_aad(oid)
            if user is None:
                return Response(f"No systemuser has object id {html.escape(oid)}", 404)
            resp = redirect(target)
            resp.set_cookie(COOKIE, oid, httponly=True, samesite="Lax", secure=True)
            return resp
        people = [
            u
            for u in emu.store.all_rows("systemuser")
            if u.get("azureactivedirectoryobjectid")
            and not u.get("applicationid")
            and not u.get("isdisabled")
        ]
        items = "".join(
            '<li><a href="/_emulator/signin?'
            + html.escape(urlencode({"oid": u["azureactivedirectoryobjectid"], "next": target}))
            + f'">{html.escape(u.get("fullname") or "")}</a> '
            + html.escape(", ".join(r["name"] for r in _user_roles(emu, u["systemuserid"])))
            + "</li>"
            for u in people
        )
        return _page(
            "Sign in - Dynamics 365 (emulated)",
            '<div class="emu-signin"><h1>Sign in to the emulated Dynamics 365</h1>'
            f"<p>Choose a user of {html.escape(emu.org_name)}:</p><ul>{items}</ul></div>",
        )

    @app.get("/_emulator/signout")
    def signout() -> Response:
        resp = redirect("/_emulator/signin")
        resp.delete_cookie(COOKIE)
        return resp

    @app.get("/_emulator/webclient/token")
    def webclient_token() -> Response:
        user = _current_user(emu)
        if user is None:
            return jsonify({"error": "login_required", "error_description": "sign in first"}), 401
        oid = user["azureactivedirectoryobjectid"]
        resource = request.args.get("resource", "bridge")
        if resource == "dataverse":
            aud = emu.url
        elif resource == "bridge":
            if not emu.bridge_client_id:
                return (
                    jsonify(
                        {
                            "error": "invalid_resource",
                            "error_description": "set emu.bridge_client_id (the bridge's "
                            "Entra application id) to get bridge tokens",
                        }
                    ),
                    400,
                )
            aud = emu.bridge_client_id
        else:
            return jsonify({"error": "invalid_resource"}), 400
        token = emu.mint_user_token(
            oid, aud=aud, name=user.get("fullname") or "", upn=user.get("domainname") or ""
        )
        return jsonify({"access_token": token, "token_type": "Bearer", "expires_in": 3599})

    @app.post("/_emulator/environment-variables")
    def environment_variables() -> Response:
        body = request.get_json(force=True) or {}
        emu.set_environment_variable(body["name"], body.get("value"))
        return Response(status=204)

    @app.post("/_emulator/bridge-client-id")
    def bridge_client_id() -> Response:
        body = request.get_json(force=True) or {}
        emu.bridge_client_id = body.get("client_id") or None
        return Response(status=204)
