"""How JSON columns are written: orjson, with the stdlib behind it for what orjson refuses.

The JSON columns (an action's frozen chain and evidence, outbox payloads, stored answers) were
encoded by `json.dumps` once per row, ~7 % of the ingest writer's CPU (bench/results/bench_ingest.md).
orjson writes the same JSON values (compact, UTF-8 instead of \\u escapes); the stdlib takes over
where orjson refuses: keys that are not strings, integers beyond 64 bits, lone surrogates. (One
difference: a NaN or infinite float is written as null, where json.dumps wrote NaN, which is not
JSON and which PostgreSQL refused; nothing stores one.)
The ledger's data is not written here: it is stored as its own RFC 8785 text (storage.ledger.chain).
Reading stays with the stdlib: orjson reads an integer beyond 64 bits as a float, silently.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(value)
