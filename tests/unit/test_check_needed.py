"""`check_needed` lets the API skip `check_json` on ordinary bodies: it must never skip a body that
`check_json` would refuse (bot.contract.schemas)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.contract.schemas import MAX_DEPTH, check_json, check_needed

TEXT = st.text() | st.text(alphabet=st.characters(categories=["Cs", "Cc", "L"]))  # NUL, lone surrogates too
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=40)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


@settings(max_examples=1000, deadline=None)
@given(VALUES, st.booleans())
def test_a_body_check_json_refuses_is_never_skipped(body: Any, ascii_only: bool) -> None:
    text = json.dumps({"body": body}, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # a raw lone surrogate cannot arrive: the API decodes the body as UTF-8 first
    if check_json(json.loads(text)) is not None:
        assert check_needed(text)


def test_the_ways_in_are_each_seen_and_an_ordinary_body_is_not() -> None:
    for bad in ('{"summary": "a\\u0000b"}', '{"summary": "\\ud800"}', json.dumps(nested(MAX_DEPTH + 1))):
        assert check_needed(bad) and check_json(json.loads(bad)) is not None, bad
    ordinary = json.dumps({"kind": "proposed", "summary": "Scale checkout-api — déjà vu ✓", "evidence": [
        {"label": "CPU", "url": "https://grafana.example.com/d/cpu"}], "metadata": {"a": [1, 2, {"b": None}]}},
        ensure_ascii=False)
    assert not check_needed(ordinary) and check_json(json.loads(ordinary)) is None
    assert not check_needed(json.dumps(nested(MAX_DEPTH - 2)))  # the outer object adds none here
