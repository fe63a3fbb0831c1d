"""The Flask app: Entra endpoints, the Web API behind bearer auth and service protection, and the
unauthenticated ``/_emulator/`` control endpoints used by processes that did not start it."""

from __future__ import annotations

import base64
import time
import uuid
from typing import TYPE_CHECKING, Any

import jwt
from flask import Flask, Response, g, jsonify, request

from .errors import ApiError
from .identity import Caller, app_object_id
from .webapi import ApiRequest

if TYPE_CHECKING:
    from . import DataverseEmulator


def _aad_error(status: int, error: str, code: int, description: str) -> Response:
    now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    body = {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {uuid.uuid4()} "
        f"Correlation ID: {uuid.uuid4()} Timestamp: {now}",
        "error_codes": [code],
        "timestamp": now,
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"https://login.microsoftonline.com/error?code={code}",
    }
    return Response(_dumps(body), status, content_type="application/json; charset=utf-8")


def _dumps(body: Any) -> str:
    import json

    return json.dumps(body)


def _api_error(exc: ApiError) -> Response:
    resp = Response(
        _dumps(exc.body()), exc.status, content_type="application/json; odata.metadata=minimal"
    )
    for name, value in exc.headers.items():
        resp.headers[name] = value
    resp.headers["OData-Version"] = "4.0"
    return resp


def create_app(emu: DataverseEmulator) -> Flask:
    app = Flask("dataverse-emulator")
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024 * 1024

    # --- Entra ID ----------------------------------------------------------------------------
    @app.get("/<tenant>/v2.0/.well-known/openid-configuration")
    def openid_configuration(tenant: str) -> Response:
        if tenant not in (emu.tenant_id, "organizations", "common"):
            return _aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        return jsonify(
            emu.identity.openid_configuration(emu.tenant_id if tenant != emu.tenant_id else tenant)
        )

    @app.get("/<tenant>/discovery/v2.0/keys")
    def jwks(tenant: str) -> Response:
        return jsonify(emu.identity.jwks())

    @app.post("/<tenant>/oauth2/v2.0/token")
    def token(tenant: str) -> Response:
        if tenant != emu.tenant_id:
            return _aad_error(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the "
                "correct tenant ID and are signing into the correct cloud.",
            )
        form = request.form
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            raw = base64.b64decode(auth[6:]).decode()
            client_id, _, secret = raw.partition(":")
        if form.get("grant_type") != "client_credentials":
            return _aad_error(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type')}'.",
            )
        if client_id not in emu.apps:
            return _aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the "
                f"directory '{emu.tenant_id}'.",
            )
        if secret != emu.apps[client_id]:
            return _aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in "
                "the request is the client secret value, not the client secret "
                f"ID, for a secret added to app '{client_id}'.",
            )
        scopes = form.get("scope", "").split()
        resource = scopes[0].removesuffix("/.default").rstrip("/") if scopes else ""
        if len(scopes) != 1 or not scopes[0].endswith("/.default") or resource != emu.url:
            return _aad_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource or '(none)'} was not "
                f"found in the tenant named {emu.tenant_id}.",
            )
        access = emu.identity.app_token(client_id, emu.url)
        emu._log(request.method, request.path, 200, app_object_id(client_id))
        return jsonify(
            {
                "token_type": "Bearer",
                "expires_in": 3599,
                "ext_expires_in": 3599,
                "access_token": access,
            }
        )

    # --- Web API -----------------------------------------------------------------------------
    @app.route("/api/data/<version>/<path:path>", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
    def web_api(version: str, path: str) -> Response:
        caller = authenticate(emu)
        g.caller = caller.key
        with emu.limits.admit(caller.key):
            req = ApiRequest(
                request.method,
                path,
                request.args.to_dict(),
                request.headers,
                request.get_data(),
                caller,
                request.headers.get("x-ms-correlation-request-id") or str(uuid.uuid4()),
            )
            result = emu.api.handle(req)
        resp = Response(result.body, result.status)
        if not result.body:
            del resp.headers["Content-Type"]
        for name, value in result.headers.items():
            resp.headers[name] = value
        resp.headers.setdefault("OData-Version", "4.0")
        resp.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] = str(
            emu.limits.remaining(caller.key)
        )
        return resp

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return _api_error(exc)

    @app.after_request
    def log(resp: Response) -> Response:
        if request.path.startswith("/api/"):
            emu._log(
                request.method, request.full_path.rstrip("?"), resp.status_code, g.get("caller", "")
            )
        return resp

    _control_routes(app, emu)
    from .webclient import register_webclient

    register_webclient(app, emu)
    return app


def authenticate(emu: DataverseEmulator) -> Caller:
    """Bearer token -> Caller, or a 401/403 ApiError shaped like Dataverse's."""
    challenge = {
        "WWW-Authenticate": f"Bearer authorization_uri={emu.authority_host}/"
        f"{emu.tenant_id}/oauth2/authorize, resource_id={emu.url}/"
    }
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise ApiError(401, "", "Bearer token is missing from the Authorization header.", challenge)
    try:
        claims = emu.identity.verify(auth[7:].strip(), [emu.url, emu.url + "/"])
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "", "The access token has expired.", challenge) from None
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "", f"The access token is invalid: {exc}.", challenge) from None
    if claims.get("tid") != emu.tenant_id:
        raise ApiError(401, "", "The access token was issued for another tenant.", challenge)
    oid = str(claims.get("oid") or claims.get("sub") or "")
    user = emu.org.user_by_aad(oid) if oid else None
    if user is None:
        raise ApiError(
            403,
            "0x80072560",
            f"The user with Azure Active Directory object id {oid} is not a member of "
            "the organization.",
        )
    if user.get("isdisabled"):
        raise ApiError(403, "0x80072560", f"The user {user['systemuserid']} is disabled.")
    return Caller(claims, oid, user["systemuserid"], user["systemuserid"], oid)


def _control_routes(app: Flask, emu: DataverseEmulator) -> None:
    """No-auth endpoints for tests and sandbox tooling in other processes."""

    @app.get("/_emulator/info")
    def info() -> Response:
        return jsonify(emu.info())

    @app.get("/_emulator/webhook-deliveries")
    def deliveries() -> Response:
        return jsonify(
            [{**d, "body": d["body"].decode("utf-8")} for d in list(emu.webhook_deliveries)]
        )

    @app.delete("/_emulator/webhook-deliveries")
    def clear_deliveries() -> Response:
        emu.webhook_deliveries.clear()
        return Response(status=204)

    @app.get("/_emulator/request-log")
    def request_log() -> Response:
        return jsonify(list(emu.request_log))

    @app.post("/_emulator/limits")
    def limits() -> Response:
        body = request.get_json(force=True) or {}
        emu.set_limits(
            requests_per_window=body.get("requests_per_window"),
            window_seconds=body.get("window_seconds"),
            max_concurrent=body.get("max_concurrent"),
        )
        if body.get("webhook_timeout") is not None:
            emu.org.webhooks.timeout = float(body["webhook_timeout"])
        lim = emu.limits
        return jsonify(
            {
                "requests_per_window": lim.requests_per_window,
                "window_seconds": lim.window_seconds,
                "max_concurrent": lim.max_concurrent,
                "webhook_timeout": emu.org.webhooks.timeout,
            }
        )

    @app.post("/_emulator/users")
    def users() -> Response:
        body = request.get_json(force=True) or {}
        uid = emu.add_system_user(
            body["fullname"],
            body["aad_object_id"],
            domainname=body.get("domainname", ""),
            roles=body.get("roles") or [],
        )
        return jsonify({"systemuserid": uid}), 201

    @app.post("/_emulator/user-token")
    def user_token() -> Response:
        body = request.get_json(force=True) or {}
        known = ("oid", "aud", "tid", "name", "upn", "roles", "scp", "expires_in", "ver")
        tok = emu.mint_user_token(**{k: body[k] for k in known if k in body})
        return jsonify({"access_token": tok, "token_type": "Bearer"})

    @app.post("/_emulator/expire-delta-tokens")
    def expire_delta_tokens() -> Response:
        emu.expire_delta_tokens()
        return Response(status=204)

    @app.post("/_emulator/alternate-keys")
    def alternate_keys() -> Response:
        body = request.get_json(force=True) or {}
        emu.add_alternate_key(body["entity"], body["columns"])
        return Response(status=204)

    @app.post("/_emulator/records/<entity>")
    def create_record(entity: str) -> Response:
        body = request.get_json(force=True) or {}
        rid = emu.create_record(
            entity, body.get("attributes", {}), tag=body.get("tag"), user_id=body.get("user_id")
        )
        return jsonify({"id": rid}), 201

    @app.get("/_emulator/records/<entity>/<rid>")
    def get_record(entity: str, rid: str) -> Response:
        row = emu.get_record(entity, rid)
        return (jsonify(row), 200) if row is not None else (jsonify({}), 404)

    @app.patch("/_emulator/records/<entity>/<rid>")
    def update_record(entity: str, rid: str) -> Response:
        body = request.get_json(force=True) or {}
        emu.update_record(
            entity,
            rid,
            body.get("attributes", {}),
            tag=body.get("tag"),
            user_id=body.get("user_id"),
        )
        return Response(status=204)

    @app.delete("/_emulator/records/<entity>/<rid>")
    def delete_record(entity: str, rid: str) -> Response:
        emu.delete_record(
            entity, rid, tag=request.args.get("tag"), user_id=request.args.get("user_id")
        )
        return Response(status=204)
