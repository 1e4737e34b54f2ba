"""What an agent may send: the body of `POST /v1/actions`, validated field by field."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import rfc8785
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUseDefault

MAX_BODY_BYTES = 1024 * 1024
# An executed action's time may run ahead of ours by clock skew, not by more.
MAX_FUTURE = timedelta(minutes=5)
# Zero-width and bidirectional controls: invisible in Slack and on the page, they hide or reverse
# what a human reads (U+202E turns "exe.txt" into "txt.exe"). Removed from what people read.
INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")


def visible(text: str) -> str:
    """`text` without zero-width and bidi control characters, stripped."""
    return INVISIBLE.sub("", text).strip()


def _json_type(value: Any) -> str:
    names: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _visible_required(value: str) -> str:
    cleaned = visible(value)
    if not cleaned:
        raise ValueError("empty once invisible (zero-width or bidi control) characters are removed")
    return cleaned


def _text(max_length: int, *, required: bool = True) -> Any:
    return Field(min_length=1 if required else 0, max_length=max_length)


def _null_is_absent(value: Any) -> Any:
    """An optional field sent as JSON null takes its default, as if it were left out (a client that
    serialises None: `"environment": null` is production, `"evidence": null` no evidence)."""
    if value is None:
        raise PydanticUseDefault()
    return value


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: str = _text(300)
    url: AnyHttpUrl

    label_visible = field_validator("label")(_visible_required)


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

    texts_visible = field_validator("summary", "action_type", "rationale")(_visible_required)
    null_is_absent = field_validator("environment", "evidence", mode="before")(_null_is_absent)

    @field_validator("confidence", mode="before")
    @classmethod
    def _a_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # JSON true is not a confidence of 1.0
            raise ValueError("a number from 0 to 1, not a boolean")
        if value is not None and not isinstance(value, int | float):  # strict: "0.5" is refused
            raise ValueError(f"a JSON number from 0 to 1, not {_json_type(value)}")
        return value

    @field_validator("executed_at")
    @classmethod
    def _aware(cls, value: datetime | None, info: ValidationInfo) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(UTC)
        except OverflowError:
            raise ValueError("an ISO 8601 time between 1970 and 9998") from None
        if not 1970 <= value.year <= 9998:
            raise ValueError("an ISO 8601 time between 1970 and 9998")
        now = (info.context or {}).get("now") or datetime.now(UTC)
        if value > now + MAX_FUTURE:
            ahead = MAX_FUTURE.seconds // 60
            raise ValueError(f"in the future (more than {ahead} minutes ahead of {now:%Y-%m-%dT%H:%M:%SZ})")
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


# Deeper than this is not an action description; it also keeps every later walk (pydantic, the
# canonical JSON of the ledger) far from Python's recursion limit.
MAX_DEPTH = 32


def check_needed(text: str) -> bool:
    """Could `check_json` find a problem in what this JSON text parses to? Only through a `\\u`
    escape (the one way to write a NUL or a lone surrogate: JSON refuses raw control characters,
    and UTF-8 has no surrogates) or more than MAX_DEPTH brackets (the only way to nest deeper).
    Conservative: a text for which this is False parses to a body `check_json` passes, so the walk
    over every value of every ordinary request is skipped."""
    return "\\u" in text or text.count("{") + text.count("[") > MAX_DEPTH


def _bad_text(text: str) -> str | None:
    if "\x00" in text:
        return "NUL characters are not allowed in text"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "text must be valid Unicode (a lone surrogate escape is not)"
    return None


def check_json(body: Any) -> FieldProblem | None:
    """The first problem no schema catches: too deep, NUL characters (PostgreSQL cannot store them
    in text) or lone surrogates (no database can). Iterative, so any nesting is safe to walk."""
    stack: list[tuple[Any, str, int]] = [(body, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            top = path.split(".", 1)[0]
            return FieldProblem(field=top, message=f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str):
            problem = _bad_text(value)
            if problem:
                return FieldProblem(field=path or "body", message=problem)
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                problem = _bad_text(key)
                if problem:
                    return FieldProblem(field=path or "body", message=f"a key: {problem}")
                stack.append((item, child, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{path}.{i}", depth + 1) for i, item in enumerate(value))
    return None


class ResultIn(BaseModel):
    """The body of `POST /v1/actions/{id}/result`: how the action went, once it ran."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    result: Literal["succeeded", "failed", "rolled_back"]
    detail: str | None = Field(default=None, max_length=20000)
    evidence: list[Evidence] = Field(default_factory=list, max_length=50)
    null_is_absent = field_validator("evidence", mode="before")(_null_is_absent)
