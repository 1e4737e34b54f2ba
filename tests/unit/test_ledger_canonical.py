"""The ledger's data text is RFC 8785 byte for byte, whichever encoder wrote it: orjson's sorted
compact JSON where `_clean` found nothing it writes differently, the rfc8785 package otherwise, and
a shared snapshot spliced in as its own text (storage.ledger.canonical)."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.ledger import canonical as ledger

KEYS = st.text(max_size=6)  # any code point: non-BMP keys sort differently in UTF-16
LEAVES = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1)
          | st.floats(allow_nan=False, allow_infinity=False)  # integral, tiny and huge ones too
          | st.text(alphabet=st.characters(blacklist_categories=["Cs"])))  # control characters too
VALUES = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                      max_leaves=12)


@settings(max_examples=1000, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_data_text_is_rfc8785(data: dict[str, Any]) -> None:
    clean = ledger.jsonable(data)
    assert ledger.canonical_json(clean) == rfc8785.dumps(clean).decode()


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(KEYS, VALUES, max_size=4), st.dictionaries(KEYS, VALUES, min_size=1, max_size=4),
       KEYS)
def test_a_shared_snapshot_is_spliced_in_as_rfc8785(rest: dict[str, Any], shared: dict[str, Any], key: str) -> None:
    frozen = ledger.canonical(shared)
    data = {**ledger.jsonable(rest), key: frozen}
    plain = {**ledger.jsonable(rest), key: ledger.jsonable(shared)}
    assert ledger.canonical_json(data) == rfc8785.dumps(plain).decode()


def test_what_orjson_writes_differently_goes_to_rfc8785() -> None:
    odd: dict[str, Any] = {"whole": 1e20, "tiny": 1e-7, "\U0001f600": 1, "\uffff": 2, "nested": [{"x": 2.5e-5}]}
    flagged: list[bool] = []
    ledger._clean(odd, flagged)
    assert flagged  # each of them goes to rfc8785
    assert ledger.canonical_json(odd) == rfc8785.dumps(odd).decode()
    assert ledger.canonical_json({"x": 0.82, "n": 3}) == '{"n":3,"x":0.82}'
    assert ledger.canonical_json({"zero": 0.0, "big": 2.0**60}) == rfc8785.dumps({"zero": 0, "big": 2.0**60}).decode()


def test_subclasses_and_a_nested_snapshot_are_written_as_their_plain_values() -> None:
    """orjson hands subclasses to `_verbatim` (OPT_PASSTHROUGH_SUBCLASS): a Canonical anywhere goes in
    as its text, a str or int subclass as its value, an Enum as its value, a datetime as UTC text."""
    from datetime import UTC, datetime, timedelta, timezone
    from enum import Enum, IntEnum, StrEnum

    class Level(StrEnum):
        OWNER = "owner"

    class Step(IntEnum):
        FIRST = 1

    class Mode(Enum):
        APPROVE = "approve"

    class Tag(str):
        pass

    frozen = ledger.canonical({"b": [1, 2.5], "a": "x"})
    at = datetime(2026, 12, 6, 3, 0, tzinfo=timezone(timedelta(hours=2)))
    data = {"level": Level.OWNER, "step": Step.FIRST, "mode": Mode.APPROVE, "tag": Tag("t"),
            "deep": [{"frozen": frozen}], "frozen": frozen, "at": at, "late": 0.0, "confidence": 0.82}
    inner = {"a": "x", "b": [1, 2.5]}
    plain: dict[str, Any] = {
        "level": "owner", "step": 1, "mode": "Mode.APPROVE", "tag": "t", "deep": [{"frozen": inner}],
        "frozen": inner, "at": at.astimezone(UTC).isoformat(timespec="microseconds"), "late": 0, "confidence": 0.82}
    assert ledger.canonical_json(data) == rfc8785.dumps(plain).decode()
