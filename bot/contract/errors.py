"""Errors the API answers with SPEC's shape: {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.details}}


def unauthorized() -> ApiError:
    """A token that is unknown or revoked (checked at the door, and again where a submission is
    written: bot.actions.writer, bot.actions.submit)."""
    return ApiError(401, "unauthorized", "unknown or revoked token")
