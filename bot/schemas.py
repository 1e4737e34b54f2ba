"""What an agent may send: the body of `POST /v1/actions`, validated field by field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import rfc8785
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_BODY_BYTES = 1024 * 1024


def _text(max_length: int, *, required: bool = True) -> Any:
    return Field(min_length=1 if required else 0, max_length=max_length)


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: str = _text(300)
    url: AnyHttpUrl


class ModelInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    provider: str | None = Field(default=None, max_length=200)
    name: str | None = Field(default=None, max_length=200)
    version: str | None = Field(default=None, max_length=200)


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    kind: Literal["proposed", "executed"]
    service: str = _text(200)
    action_type: str = _text(200)
    summary: str = _text(3000)
    rationale: str = _text(20000)
    environment: str = Field(default="production", min_length=1, max_length=100)
    confidence: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    evidence: list[Evidence] = Field(default_factory=list, max_length=50)
    executed_at: datetime | None = None
    callback_url: AnyHttpUrl | None = None
    external_id: str | None = Field(default=None, max_length=200)
    model: ModelInfo | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("executed_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    @field_validator("metadata")
    @classmethod
    def _canonical(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # It goes into the hash-chained ledger, so it must have one canonical JSON form.
        if value is not None:
            try:
                rfc8785.dumps(value)
            except (rfc8785.CanonicalizationError, RecursionError, TypeError, ValueError) as exc:
                raise ValueError(f"must be plain JSON (integers within ±2^53): {exc}") from None
        return value

    @model_validator(mode="after")
    def _executed_only(self) -> ActionIn:
        if self.kind == "proposed" and self.executed_at is not None:
            raise ValueError("executed_at: only an executed action has executed_at")
        return self


class FieldProblem(BaseModel):
    field: str
    message: str


def field_problems(exc: ValidationError) -> list[FieldProblem]:
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        elif err["type"] == "missing":
            msg = "required"
        if ": " in msg and field == "body":
            field, msg = msg.split(": ", 1)
        problems.append(FieldProblem(field=field, message=msg))
    return problems


def _no_nul(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL characters are not allowed in text")
    elif isinstance(value, dict):
        for k, v in value.items():
            _no_nul(k)
            _no_nul(v)
    elif isinstance(value, list):
        for v in value:
            _no_nul(v)


def check_text(value: Any) -> None:
    """Reject NUL characters anywhere (PostgreSQL cannot store them in text)."""
    _no_nul(value)
