"""The ledger's one text form: RFC 8785 (JSON Canonicalization Scheme) of an entry's content.

What is hashed is `assemble(...)`: the content's keys in RFC 8785 order around the data's RFC 8785
text. The data text is written by orjson (sorted, compact) whenever that is RFC 8785 byte for byte,
which `_clean` checks on its one walk over the data, and by the rfc8785 package otherwise
(tests/unit/test_ledger_canonical.py pins both). Appending: storage.ledger.chain; verifying:
storage.ledger.verify.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson
import rfc8785

GENESIS = "0" * 64  # the hash before the first entry
_jstr = json.encoder.encode_basestring  # type: ignore[attr-defined]  # C-accelerated, no ASCII escaping
MAX_SAFE_INT = 2**53 - 1  # RFC 8785 numbers are IEEE doubles: larger integers are kept as strings
_PLAIN = frozenset({str, bool, type(None)})  # JSON as they are: no conversion, no check


def utc_iso(at: datetime) -> str:
    """The one text form of `at` that is hashed: UTC, microseconds, "+00:00" (both databases keep µs)."""
    text = _ISO.get(at)  # equal datetimes (the same instant; naive: the same wall time) have one text
    if text is None:
        text = (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat(timespec="microseconds")
        if len(_ISO) >= 256:
            _ISO.clear()
        _ISO[at] = text
    return text


# A submission's entries and the steps they record share one `at` (its arrival): written once.
_ISO: dict[datetime, str] = {}


def content_of(seq: int, at: datetime | str, event: str, action_id: int | None, actor: str | None,
               data: Any) -> dict[str, Any]:
    """What is hashed: everything but the hashes themselves."""
    return {
        "seq": seq,
        "at": at if isinstance(at, str) else utc_iso(at),
        "event": event,
        "action_id": action_id,
        "actor": actor,
        "data": data,
    }


def chain_hash(prev_hash: str, content: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + rfc8785.dumps(content)).hexdigest()


def assemble(seq: int, at_iso: str, event: str, action_id: int | None, actor: str | None,
             data_json: str) -> bytes:
    """RFC 8785 bytes of an entry's content, given its data already in RFC 8785 form (as stored).

    The content's keys sorted (action_id, actor, at, data, event, seq) and strings escaped as
    RFC 8785 escapes them (the stdlib's encode_basestring does the same: quote, backslash, and
    control characters, \\u00xx lowercase); a test checks this equals rfc8785.dumps(content).
    """
    return content_prefix(at_iso, event, action_id, actor, data_json) + b"%d}" % int(seq)


def content_prefix(at_iso: str, event: str, action_id: int | None, actor: str | None, data_json: str) -> bytes:
    """An entry's RFC 8785 content up to its seq, which sorts last: `prefix + b"%d}" % seq` is the
    content (PostgreSQL chains a batch from the prefixes, storage.ledger.driver)."""
    return (f'{{"action_id":{"null" if action_id is None else int(action_id)},'
            f'"actor":{"null" if actor is None else _jstr(actor)},"at":{_jstr(at_iso)},"data":{data_json},'
            f'"event":{_jstr(event)},"seq":').encode()


def _dumps_fast(content: Any) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hash_matches(prev_hash: str, content: dict[str, Any], expected: str) -> bool:
    """Does `content` chained onto `prev_hash` hash to `expected`?

    Fast path: the stdlib's sorted compact JSON equals RFC 8785 for strings, integers, booleans
    and null with BMP keys, i.e. nearly every entry. When it does not (some floats), the digest
    simply differs and the real canonical form decides, so the fast path can never accept a
    changed entry: equal digests mean equal bytes, and those bytes parse to this content.
    """
    prefix = prev_hash.encode()
    try:
        if hashlib.sha256(prefix + _dumps_fast(content)).hexdigest() == expected:
            return True
    except (UnicodeEncodeError, ValueError):
        pass
    try:
        return hashlib.sha256(prefix + rfc8785.dumps(content)).hexdigest() == expected
    except (rfc8785.CanonicalizationError, UnicodeEncodeError, ValueError):
        return False


class Canonical(dict[str, Any]):
    """A JSON object already in ledger form (`jsonable`) together with its RFC 8785 text: put in an
    entry's data (top level), it is neither converted nor encoded again (a snapshot that many
    entries share is converted once; bot.actions.frozen)."""

    __slots__ = ("fragment", "text")

    def __init__(self, value: dict[str, Any], text: str) -> None:
        super().__init__(value)
        self.text = text
        self.fragment = orjson.Fragment(text)  # orjson writes it verbatim


def canonical(value: dict[str, Any]) -> Canonical:
    """`value` in ledger form with its RFC 8785 text, for entries that share it."""
    return Canonical(*ledger_form(value))


def ledger_form(value: Any) -> tuple[Any, str]:
    """(jsonable(value), its RFC 8785 text), from one walk over `value`."""
    odd: list[bool] = []
    clean = _clean(value, odd)
    return clean, _encode(clean, plain=not odd)


def jsonable(value: Any) -> Any:
    """Ledger data must hash the same before and after a database round trip (SQLite and
    PostgreSQL): datetimes become UTC ISO strings, non-finite floats and integers beyond JSON's
    safe range become strings, integral floats integers (the same JSON number), tuples become
    lists, keys become strings."""
    return _clean(value, [])


def canonical_json(value: Any) -> str:
    """RFC 8785 text of a value, converted as `jsonable` converts it (0.0 becomes 0, as RFC 8785
    writes it)."""
    return ledger_form(value)[1]


def _clean(value: Any, odd: list[bool]) -> Any:
    """jsonable(value); on the way, appends to `odd` when orjson's sorted compact JSON of the
    result would not be RFC 8785 byte for byte: a float that is integral or outside [1e-4, 1e16)
    (Python and orjson write 1.0 / 1e-05, RFC 8785 writes 1 / 0.00001), or a key outside the BMP
    (sorted by code point, RFC 8785 sorts by UTF-16 unit). One walk serves both.

    Exact types first (strings, dicts and lists are nearly all of an entry's data, and a call per
    string leaf was most of this walk's cost); subclasses (a StrEnum, Canonical) take the slow path."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str or not k.isascii():
                k = _key(k, odd)
            out[k] = v if type(v) in _PLAIN else _clean(v, odd)
        return out
    if kind is list:
        return [v if type(v) in _PLAIN else _clean(v, odd) for v in value]
    if kind is int:
        return _safe_int(value)
    if kind is float:  # a confidence, late_seconds: in every submission's entries
        return _clean_float(value, odd)
    if kind is datetime:
        return _clean_datetime(value)
    if kind is Canonical:  # converted already (bot.actions.frozen): its text goes in verbatim
        return value
    return _clean_other(value, odd)


def _safe_int(value: int) -> int | str:
    return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)


def _key(key: Any, odd: list[bool]) -> str:
    text = str(key)  # a StrEnum key: its value
    if not text.isascii() and max(map(ord, text)) >= 0x10000:
        odd.append(True)
    return text


def _clean_other(value: Any, odd: list[bool]) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value) if isinstance(value, Enum) else value  # a StrEnum hashes as its value
    if isinstance(value, int):
        return _safe_int(value)
    if isinstance(value, float):
        return _clean_float(value, odd)
    if isinstance(value, datetime):
        return _clean_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        if type(value) is Canonical:
            return value
        return _clean(dict(value), odd)
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, odd) for v in value]
    return str(value)


def _clean_float(value: float, odd: list[bool]) -> float | int | str:
    if not math.isfinite(value):
        return str(value)
    # RFC 8785 writes 900.0 as 900 anyway: as an int the fast encoder can be used.
    if value.is_integer() and abs(value) <= MAX_SAFE_INT:
        return int(value)
    if value.is_integer() or not 1e-4 <= abs(value) < 1e16:
        odd.append(True)
    return value


def _clean_datetime(value: datetime) -> str:
    return utc_iso(value) if value.tzinfo is not None else value.isoformat()


def _encode(value: Any, *, plain: bool) -> str:
    """RFC 8785 text of a jsonable value; `plain`: orjson's sorted compact JSON is RFC 8785 for it
    (checked by `_clean`; for strings, integers, booleans, null and such floats orjson's bytes and
    RFC 8785's agree: tests/unit/test_ledger_canonical.py). Canonical values at the top level go in
    as their text (a JSON object's text does not depend on where it stands)."""
    if plain:
        try:
            return orjson.dumps(value, default=_verbatim, option=_ORJSON).decode()
        except TypeError:
            pass  # a lone surrogate: let rfc8785 refuse it
    shared = type(value) is dict and any(type(v) is Canonical for v in value.values())
    return _spliced_rfc8785(value) if shared else rfc8785.dumps(value).decode()


# Subclasses (a Canonical above all) reach `_verbatim` instead of being written as plain dicts: a
# Canonical goes in as its text without a copy of the entry's data to swap it in.
_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _verbatim(value: Any) -> Any:
    """orjson's `default` for what `_clean` leaves as a subclass: a Canonical's text, a str or int
    subclass (not an Enum's: `_clean` made those plain) as the plain value. Anything else cannot
    occur after `_clean`; TypeError sends it to rfc8785."""
    if type(value) is Canonical:
        return value.fragment
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(type(value).__name__)


def _spliced_rfc8785(value: dict[str, Any]) -> str:
    """rfc8785 has no verbatim values: each Canonical stands in as a marker string, whose JSON text
    is then replaced by the value's text (a key's place in the object does not depend on its value)."""
    texts = {f"{_SPLICE}{k}": v.text for k, v in value.items() if type(v) is Canonical}
    text = rfc8785.dumps({k: f"{_SPLICE}{k}" if type(v) is Canonical else v for k, v in value.items()}).decode()
    for stand_in, inner in texts.items():
        text = text.replace(_jstr(stand_in), inner, 1)
    return text


# Stands for a Canonical value while the rest of an entry's data is encoded; random, so that no
# string in the data can be mistaken for it.
_SPLICE = f"\x00canonical-{uuid.uuid4().hex}-"
