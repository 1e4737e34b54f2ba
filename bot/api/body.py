"""A request's JSON body, read once for every route that takes one: the media type, the size limit
(1 MiB), UTF-8, JSON (the stdlib's decoder: orjson reads integers beyond 64 bits as floats), a JSON
object, and what no schema catches (bot.contract.schemas.check_json); each refusal a 4xx that says
which part is wrong. Also the Idempotency-Key header's shape."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from bot.contract.errors import ApiError
from bot.contract.schemas import MAX_BODY_BYTES, FieldProblem, check_json, check_needed

# JSON, and curl's default for `-d` (so the README's one-liner works without a header).
JSON_TYPES = {"application/json", "application/x-www-form-urlencoded", "application/octet-stream"}


def too_large() -> ApiError:
    return ApiError(413, "body_too_large", f"the body is over {MAX_BODY_BYTES} bytes (1 MiB)")


def bad_request(problems: list[FieldProblem]) -> ApiError:
    summary = "; ".join(f"{p.field}: {p.message}" for p in problems)
    return ApiError(400, "invalid_request", summary, fields=[p.model_dump() for p in problems])


async def read_object(request: web.Request) -> dict[str, Any]:
    """The body: a JSON object, with nothing in it that no schema catches (`check_json`: too deep, a
    NUL, a lone surrogate), else the 4xx that says what is wrong."""
    body, text = await _read_json(request)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_request", f"the body must be a JSON object, not {type(body).__name__}",
                       fields=[{"field": "body", "message": "a JSON object"}])
    problem = check_json(body) if check_needed(text) else None
    if problem is not None:
        raise bad_request([problem])
    return body


async def _read_json(request: web.Request) -> tuple[Any, str]:
    """The parsed body and its text."""
    ctype = request.content_type  # aiohttp answers application/octet-stream when none was sent
    if ctype not in JSON_TYPES and not ctype.endswith("+json"):
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type: send application/json, not {ctype}", field="Content-Type")
    # A declared length over the limit is refused before reading; a lying or chunked one is caught
    # by aiohttp's client_max_size while reading (HTTPRequestEntityTooLarge, see the middleware).
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large()
    raw = await request.read()
    if len(raw) > MAX_BODY_BYTES:
        raise too_large()
    try:  # (not orjson: it reads integers beyond 64 bits as floats, silently changing the value)
        text = raw.decode("utf-8")
        return _DECODER.decode(text), text
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not UTF-8 (byte {exc.start})") from None
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {reason}") from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)  # built once: json.loads(..., kw) builds one a call


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is not None and not (0 < len(key) <= 255 and key.isascii() and key.isprintable()):
        expected = "1 to 255 printable ASCII characters"
        raise ApiError(400, "invalid_request", f"Idempotency-Key: {expected}",
                       fields=[{"field": "Idempotency-Key", "message": expected}])
    return key
