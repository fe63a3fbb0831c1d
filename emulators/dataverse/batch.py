"""``$batch`` (execute-batch-operations-using-web-api.md): multipart/mixed parsing, atomic
changesets, Content-ID ``$n`` references, ``Prefer: odata.continue-on-error`` and the
``--batchresponse_<guid>`` response layout of the documented samples."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus

from . import errors
from .errors import ApiError
from .store import Ref, Transaction

MAX_OPERATIONS = 1000
_REQUEST_LINE = re.compile(r"^(GET|POST|PATCH|PUT|DELETE)\s*(\S+)\s+HTTP/1\.[01]\s*$", re.I)


@dataclass
class Operation:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class Part:
    operation: Operation | None = None
    changeset: list[Operation] = field(default_factory=list)


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes


def boundary_of(content_type: str) -> str | None:
    m = re.search(r'boundary="?([^";]+)"?', content_type or "", re.I)
    return m.group(1).strip() if m else None


def _split(text: str, boundary: str) -> list[str]:
    parts: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        stripped = line.rstrip("\r").strip()
        if stripped in (f"--{boundary}", f"--{boundary}--"):
            if current is not None:
                parts.append("\n".join(current))
            if stripped.endswith(f"{boundary}--"):
                break
            current = []
            continue
        if current is not None:
            current.append(line.rstrip("\r"))
    return parts


def _headers_and_rest(block: str) -> tuple[dict[str, str], str]:
    lines = block.lstrip("\n").split("\n")
    headers: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip():
        name, _, value = lines[i].partition(":")
        headers[name.strip().lower()] = value.strip()
        i += 1
    return headers, "\n".join(lines[i + 1 :])


def _operation(block: str) -> Operation:
    part_headers, rest = _headers_and_rest(block)
    lines = rest.lstrip("\n").split("\n")
    m = _REQUEST_LINE.match(lines[0]) if lines else None
    if m is None:
        raise ApiError(
            400, errors.QUERY_ERROR, "The batch part does not contain a valid request line."
        )
    headers, body = _headers_and_rest("\n".join(lines[1:]))
    return Operation(
        m.group(1).upper(),
        m.group(2),
        headers,
        body.strip().encode(),
        part_headers.get("content-id"),
    )


def parse_batch(body: bytes, content_type: str) -> list[Part]:
    boundary = boundary_of(content_type)
    if not boundary:
        raise ApiError(400, errors.QUERY_ERROR, "The batch request must have a boundary.")
    parts = []
    count = 0
    for block in _split(body.decode("utf-8"), boundary):
        headers, rest = _headers_and_rest(block)
        inner = boundary_of(headers.get("content-type", ""))
        if headers.get("content-type", "").lower().startswith("multipart/mixed") and inner:
            ops = [_operation(b) for b in _split(rest, inner)]
            if any(op.method == "GET" for op in ops):
                raise ApiError(
                    400, errors.QUERY_ERROR, "GET requests are not allowed inside a change set."
                )
            parts.append(Part(changeset=ops))
            count += len(ops)
        else:
            parts.append(Part(operation=_operation(block)))
            count += 1
    if count > MAX_OPERATIONS:
        raise ApiError(
            400,
            errors.QUERY_ERROR,
            f"The number of requests in the batch exceeded the limit of {MAX_OPERATIONS}.",
        )
    return parts


# handle(op, tx, resolve, locations) -> Result; raises nothing (errors become results)
Executor = Callable[[Operation, Transaction, Callable[[str], Ref] | None], Result]


class BatchRunner:
    """Runs parsed parts with ``execute`` and renders the multipart response."""

    def __init__(self, execute: Executor, resolve: Callable[[str], Ref], api_url: str) -> None:
        self.execute = execute
        self.resolve = resolve
        self.api_url = api_url
        self.locations: dict[str, str] = {}

    def resolve_with_ids(self, value: str) -> Ref:
        if value.startswith("$"):
            location = self.locations.get(value[1:])
            if location is None:
                raise ApiError(
                    400,
                    errors.QUERY_ERROR,
                    f"Content-ID Reference: '{value}' does not exist in the batch context.",
                )
            value = location
        return self.resolve(value)

    def _rewrite(self, op: Operation) -> Operation:
        m = re.match(r"^\$(\w+)(.*)$", op.url)
        if m:
            location = self.locations.get(m.group(1))
            if location is None:
                raise ApiError(
                    400,
                    errors.QUERY_ERROR,
                    f"Content-ID Reference: '${m.group(1)}' does not exist in the batch context.",
                )
            op.url = location + m.group(2)
        return op

    def _run_one(self, op: Operation, tx: Transaction) -> Result:
        try:
            result = self.execute(self._rewrite(op), tx, self.resolve_with_ids)
        except ApiError as exc:
            result = error_result(exc)
        if op.content_id and "OData-EntityId" in result.headers:
            self.locations[op.content_id] = result.headers["OData-EntityId"]
        return result

    def run(
        self,
        parts: list[Part],
        continue_on_error: bool,
        begin: Callable[[], Transaction],
        commit: Callable[[Transaction], None],
        rollback: Callable[[Transaction], None],
    ) -> tuple[str, bytes]:
        """Returns (content type, body)."""
        batch_boundary = f"batchresponse_{uuid.uuid4()}"
        chunks: list[str] = []
        for part in parts:
            tx = begin()
            if part.operation is not None:
                result = self._run_one(part.operation, tx)
                failed = result.status >= 400
                (rollback if failed else commit)(tx)
                chunks.append(f"--{batch_boundary}\n" + _render(result, None))
            else:
                results = []
                failed = False
                for op in part.changeset:
                    result = self._run_one(op, tx)
                    results.append((op, result))
                    if result.status >= 400:
                        failed = True
                        break
                if failed:
                    rollback(tx)
                    op, result = results[-1]
                    chunks.append(f"--{batch_boundary}\n" + _render(result, op.content_id))
                else:
                    commit(tx)
                    cs = f"changesetresponse_{uuid.uuid4()}"
                    inner = "".join(f"--{cs}\n" + _render(r, op.content_id) for op, r in results)
                    chunks.append(
                        f"--{batch_boundary}\nContent-Type: multipart/mixed; "
                        f"boundary={cs}\n\n{inner}--{cs}--\n"
                    )
            if failed and not continue_on_error:
                break
        body = "".join(chunks) + f"--{batch_boundary}--\n"
        return f"multipart/mixed; boundary={batch_boundary}", body.replace("\n", "\r\n").encode()


def error_result(exc: ApiError) -> Result:
    return Result(
        exc.status,
        {"Content-Type": "application/json; odata.metadata=minimal", **exc.headers},
        json.dumps(exc.body()).encode(),
    )


def _render(result: Result, content_id: str | None) -> str:
    lines = ["Content-Type: application/http", "Content-Transfer-Encoding: binary"]
    if content_id:
        lines.append(f"Content-ID: {content_id}")
    lines += ["", f"HTTP/1.1 {result.status} {HTTPStatus(result.status).phrase}"]
    headers = dict(result.headers)
    headers.setdefault("OData-Version", "4.0")
    if "OData-EntityId" in headers:
        headers.setdefault("Location", headers["OData-EntityId"])
    order = ["Content-Type", "OData-Version", "Location", "OData-EntityId"]
    for name in order + [h for h in headers if h not in order]:
        if name in headers:
            lines.append(f"{name}: {headers[name]}")
    lines.append("")
    if result.body:
        lines.append(result.body.decode())
    return "\n".join(lines) + "\n"
