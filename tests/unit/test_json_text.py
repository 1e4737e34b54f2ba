"""JSON columns are written by orjson where it writes the same value, by the stdlib where it refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from storage import json_text


@pytest.mark.parametrize("value", [
    {"a": 1, "b": [1.5, None, True], "c": {"d": "é ✓ 😀"}},
    {1: "an integer key", "x": 2},  # orjson refuses non-string keys
    {"big": 2**70, "neg": -(2**70)},  # beyond 64 bits: orjson refuses, the stdlib keeps them exact
    {"surrogate": "\ud800"},  # a lone surrogate: orjson refuses
])
def test_written_json_reads_back_as_the_stdlib_wrote_it(value: Any) -> None:
    assert json.loads(json_text.dumps(value)) == json.loads(json.dumps(value))


def test_the_common_case_is_compact_utf8() -> None:
    assert json_text.dumps({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'
