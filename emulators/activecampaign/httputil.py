"""Request parsing, error bodies and paging shared by the route modules."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request

from .store import Store, as_int

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class ApiError(Exception):
    """Abort a handler with an AC-shaped error body."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def not_found(kind: str, ident: Any, status: int = 404) -> ApiError:
    """AC's most common 404 body: ``No Result found for <Model> with id N``."""
    return ApiError(status, {"message": f"No Result found for {kind} with id {ident}"})


def missing_attribute(name: str) -> ApiError:
    return ApiError(
        422,
        {
            "errors": [
                {
                    "status": 422,
                    "title": "Missing attribute",
                    "source": {"pointer": f"/data/attributes/{name}"},
                }
            ]
        },
    )


def invalid(title: str, code: str, attribute: str, detail: str = "") -> ApiError:
    return ApiError(
        422,
        {
            "errors": [
                {
                    "title": title,
                    "detail": detail,
                    "code": code,
                    "source": {"pointer": f"/data/attributes/{attribute}"},
                }
            ]
        },
    )


def json_body() -> dict:
    """The request's JSON object; malformed JSON → 400 with a message (AC answers 400/422)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, {"message": f"Malformed JSON in request body: {exc}"}) from exc
    if not isinstance(body, dict):
        raise ApiError(400, {"message": "The request body must be a JSON object"})
    return body


def member(body: dict, key: str) -> dict:
    """``body[key]`` as an object (the resource envelope, e.g. ``{"contact": {...}}``)."""
    inner = body.get(key)
    if not isinstance(inner, dict):
        raise ApiError(
            422,
            {
                "errors": [
                    {
                        "title": f"The '{key}' object is required",
                        "detail": "",
                        "code": "field_missing",
                        "source": {"pointer": f"/data/{key}"},
                    }
                ]
            },
        )
    return inner


def page_params() -> tuple[int, int]:
    """``limit`` (default 20, clamped to 1..100) and ``offset`` (≥ 0)."""
    limit = as_int(request.args.get("limit"))
    limit = DEFAULT_LIMIT if limit is None or limit <= 0 else min(limit, MAX_LIMIT)
    offset = max(as_int(request.args.get("offset")) or 0, 0)
    return limit, offset


def paginate(items: list) -> tuple[list, str]:
    """One page of ``items`` and the total as AC's string ``meta.total``."""
    limit, offset = page_params()
    return items[offset : offset + limit], str(len(items))


def order_of(name: str) -> str | None:
    value = request.args.get(f"orders[{name}]")
    return value.upper() if value else None


def id_list(name: str) -> list[int]:
    """Repeated/array/comma forms: ``ids=1,2``, ``ids[]=1&ids[]=2``."""
    raw = request.args.getlist(name) + request.args.getlist(f"{name}[]")
    out = []
    for chunk in raw:
        for part in chunk.split(","):
            value = as_int(part)
            if value is not None:
                out.append(value)
    return out


def locked(store: Store) -> Callable:
    """Run a view under the account lock and turn its ``(body, status)`` into JSON."""

    def decorate(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response | tuple[Response, int]:
            with store.lock:
                result = view(*args, **kwargs)
            if isinstance(result, Response):
                return result
            body, status = result if isinstance(result, tuple) else (result, 200)
            return jsonify(body), status

        return wrapper

    return decorate


def route(bp: Blueprint, store: Store, rule: str, methods: list[str]) -> Callable:
    """``bp.route`` + :func:`locked` in one decorator."""

    def decorate(view: Callable) -> Callable:
        return bp.route(rule, methods=methods, endpoint=f"{view.__name__}_{'_'.join(methods)}")(
            locked(store)(view)
        )

    return decorate


def api_base() -> str:
    """This account's ``…/api/3`` URL as the client reached it, for ``links``."""
    return request.url_root.rstrip("/") + "/api/3"
