"""The one exception type every layer raises to produce a Dataverse-style error response."""

from __future__ import annotations

from typing import Any

# Codes Dataverse uses for the errors the emulator produces (hex as the Web API prints them).
QUERY_ERROR = "0x80060888"  # OData query/serialization problems
NOT_FOUND = "0x80040217"  # ObjectDoesNotExist
DUPLICATE = "0x80040237"  # DuplicateRecord
CONCURRENCY = "0x80060882"  # ConcurrencyVersionMismatch
VALIDATION = "0x80044331"  # generic validation (length)
OUT_OF_RANGE = "0x8004431a"  # picklist value outside the valid range
RESOURCE_NOT_FOUND = "0x8006088a"  # unknown entity set / segment
EXPIRED_VERSION_STAMP = "0x80044352"  # delta token too old / unknown
NOT_ORG_MEMBER = "0x80072560"
WEBHOOK_FAILED = "0x80050203"


class ApiError(Exception):
    """An HTTP error answered as ``{"error":{"code":..., "message":...}}``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def not_found(entity: str, record_id: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"{entity} With Id = {record_id} Does Not Exist")


def unknown_property(type_name: str, prop: str) -> ApiError:
    return ApiError(
        400, QUERY_ERROR, f"Could not find a property named '{prop}' on type '{type_name}'."
    )
