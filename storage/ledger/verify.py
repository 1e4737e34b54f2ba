"""Verify the audit ledger: recompute the chain, stream it, and name the first bad entry and why.

Kinds of problem: `changed` (an entry no longer matches its hash, or was rewritten with a
recomputed hash that the next entry does not link to), `removed` (a gap in the sequence, or
entries missing at the end), `inserted` (an entry that the chain does not link through, or
entries past the head), `reordered` (an entry that links to one that comes after it), `head`
(the head row disagrees with the last entry) and `anchor` (a published HASH@SEQ that the ledger
no longer has: a rewrite of the whole table).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.ledger.canonical import GENESIS, assemble, hash_matches, utc_iso
from storage.ledger.read import read_head, snapshot, stream_chain
from storage.models import LedgerEntry

LOOKAHEAD = 1000  # rows read past a failure to tell an insertion or a reordering from a change
ANCHOR_RE = re.compile(r"^([0-9a-f]{64})@(\d+)$")


@dataclass(frozen=True)
class Problem:
    seq: int  # the first bad entry (for `removed`: the first missing sequence number)
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"entry {self.seq}: {self.kind}: {self.detail}"


@dataclass
class Verification:
    entries: int = 0  # entries that verified, from the first
    last_seq: int = 0
    last_hash: str = GENESIS
    head: tuple[int, str] | None = None
    problem: Problem | None = None
    anchors: dict[int, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.problem is None


def parse_anchor(text: str) -> tuple[int, str]:
    """`HASH@SEQ` (as posted to the leadership channel) -> (seq, hash)."""
    match = ANCHOR_RE.match(text.strip().lower())
    if not match:
        raise ValueError(f"not an anchor: {text!r} (expected HASH@SEQ: 64 hex digits, '@', a number)")
    return int(match.group(2)), match.group(1)


def format_anchor(seq: int, hash_: str) -> str:
    return f"{hash_}@{seq}"


def _content(row: Sequence[Any], seq: int | None = None) -> dict[str, Any]:
    """A decoded row (see _decode) as the dict that is hashed."""
    return {"seq": row[0] if seq is None else seq, "at": row[1], "event": row[2],
            "action_id": row[3], "actor": row[4], "data": row[5]}


def _self_valid(row: Sequence[Any], seq: int | None = None) -> bool:
    return hash_matches(row[6], _content(row, seq), row[7])


def _at_iso(dialect: Dialect) -> Callable[[str], str]:
    """Raw `at` text -> the hashed form (UTC ISO, microseconds), exactly as the app reads it."""
    if dialect.name == "postgresql":
        return lambda text: text  # formatted so by the query
    # The column type's own reader (SQLAlchemy's SQLite datetime parsing, then UTC).
    column_type = LedgerEntry.__table__.c.at.type.dialect_impl(dialect)  # type: ignore[attr-defined]
    parse = column_type.result_processor(dialect, None)

    def convert(text: str) -> str:
        if len(text) == 26 and text[10] == " ":  # SQLAlchemy's SQLite storage format
            return f"{text[:10]}T{text[11:]}+00:00"
        try:
            return utc_iso(parse(text))
        except (TypeError, ValueError):
            return text  # unreadable: it will not match, and is reported as changed
    return convert


def _decode(row: Sequence[Any], at_iso: Callable[[str], str]) -> tuple[Any, ...]:
    """A raw row with `at` in its hashed form and data parsed (left as text if it is not JSON)."""
    try:
        data = json.loads(row[5])
    except (TypeError, ValueError):
        data = row[5]
    return (row[0], at_iso(row[1]), row[2], row[3], row[4], data, row[6], row[7])


def _raw_matches(prev_hash: str, at_iso: str, row: Sequence[Any]) -> bool:
    """Fast path: hash the stored text as is (data is stored in RFC 8785 form by `append`)."""
    try:
        content = assemble(row[0], at_iso, row[2], row[3], row[4], row[5])
    except (TypeError, ValueError, UnicodeEncodeError):
        return False
    return hashlib.sha256(prev_hash.encode() + content).hexdigest() == row[7]


def classify(row: Sequence[Any], expected: int, prev_hash: str, prevprev_hash: str | None,
             ahead: Sequence[Sequence[Any]]) -> Problem:
    """Why `row` (the first that fails) breaks the chain, given what verified before it and a
    window of the rows after it."""
    seq, row_prev, row_hash = row[0], row[6], row[7]
    if seq < expected:
        return Problem(seq, "inserted", f"entry {seq} comes before the chain's first entry {expected}")
    if seq > expected:
        missing = f"entry {expected} is" if seq == expected + 1 else f"entries {expected}..{seq - 1} are"
        return Problem(expected, "removed",
                       f"{missing} missing: the sequence jumps from {expected - 1} to {seq}")
    linked = row_prev == prev_hash
    if not linked and hash_matches(prev_hash, _content(row), row_hash):
        return Problem(seq, "changed", "its prev_hash was edited (its content still matches the chain)")
    if not linked:
        for later in ahead:
            if later[7] == row_prev:
                return Problem(seq, "reordered", f"it links to entry {later[0]}, which comes after it: "
                                                 f"the original order had entry {later[0]} first")
    if ahead and ahead[0][6] == prev_hash and ahead[0][0] == seq + 1:
        return Problem(seq, "inserted", f"it is not part of the chain: entry {seq + 1} links straight to "
                                        f"entry {seq - 1}")
    if not linked and prevprev_hash is not None and row_prev == prevprev_hash:
        return Problem(seq - 1, "inserted", f"it is not part of the chain: entry {seq} links straight to "
                                            f"entry {seq - 2}")
    if not linked and _self_valid(row):
        return Problem(seq - 1, "changed",
                       f"it was rewritten with a recomputed hash: entry {seq} still links to the original")
    if not linked:
        for gap in range(1, 9):
            if _self_valid(row, seq + gap):
                return Problem(seq, "removed", f"{gap} entr{'y' if gap == 1 else 'ies'} removed here and the "
                                               f"later ones renumbered: entry {seq} was entry {seq + gap}")
        return Problem(seq, "changed", f"it matches neither its hash nor the link to entry {seq - 1}")
    return Problem(seq, "changed", "its content no longer matches its hash")


async def _rows_after(parts: AsyncIterator[Sequence[Any]], rest: Sequence[Any]) -> list[Sequence[Any]]:
    ahead = list(rest[:LOOKAHEAD])
    while len(ahead) < LOOKAHEAD:
        try:
            ahead.extend(await anext(parts))
        except StopAsyncIteration:
            break
    return ahead[:LOOKAHEAD]


async def verify(
    engine: AsyncEngine,
    *,
    anchors: dict[int, str] | None = None,
    batch: int = 5000,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Stream the whole chain from one snapshot; stop at the first bad entry. `anchors`:
    {seq: hash} published earlier (e.g. in Slack), which the chain must still contain."""
    anchors = dict(anchors or {})
    out = Verification(anchors=anchors)
    expected, prev_hash, prevprev_hash = 1, GENESIS, None
    if anchors.get(0, GENESIS) != GENESIS:
        out.problem = Problem(0, "anchor", "an anchor at 0 must be the genesis hash")
        return out
    async with snapshot(engine) as conn:
        at_iso = _at_iso(conn.dialect)
        out.head = await read_head(conn)
        stream = stream_chain(conn, batch=batch)
        parts = stream.__aiter__()
        async with contextlib.aclosing(stream):
            async for part in parts:
                for index, row in enumerate(part):
                    seq, row_prev, row_hash = row[0], row[6], row[7]
                    if seq != expected or row_prev != prev_hash or not (
                            _raw_matches(prev_hash, at_iso(row[1]), row)
                            or _self_valid(_decode(row, at_iso))):
                        ahead = [_decode(r, at_iso) for r in await _rows_after(parts, part[index + 1:])]
                        problem = classify(_decode(row, at_iso), expected, prev_hash, prevprev_hash, ahead)
                        # The culprit may be the entry before this one (rewritten, or inserted).
                        good = min(expected - 1, problem.seq - 1)
                        out.entries = out.last_seq = good
                        out.last_hash = prev_hash if good == expected - 1 else (prevprev_hash or GENESIS)
                        out.problem = problem
                        return out
                    if anchors and seq in anchors and anchors[seq] != row_hash:
                        out.entries, out.last_seq, out.last_hash = expected - 1, expected - 1, prev_hash
                        out.problem = Problem(seq, "anchor", (
                            f"its hash is {row_hash} but the anchor published for it is {anchors[seq]}: "
                            f"the ledger was rewritten at or before entry {seq}"))
                        return out
                    prevprev_hash, prev_hash = prev_hash, row_hash
                    expected += 1
                out.entries, out.last_seq, out.last_hash = expected - 1, expected - 1, prev_hash
                if progress is not None:
                    progress(len(part))
    out.problem = _check_end(out)
    if out.problem is not None and out.problem.seq <= out.last_seq:
        out.entries = out.last_seq = out.problem.seq - 1  # what verified is only what the head vouches for
    return out


def _check_end(out: Verification) -> Problem | None:
    """The chain verified; does it end where the head (and every anchor) says it does?"""
    last = out.last_seq
    beyond = sorted(s for s in out.anchors if s > last)
    if beyond:
        return Problem(last + 1, "removed", f"the ledger ends at entry {last} but an anchor was published "
                                            f"at entry {beyond[0]}")
    if out.head is None:
        return None if last == 0 else Problem(last, "head", "the ledger_head row is missing")
    head_seq, head_hash = out.head
    if head_seq < last:
        return Problem(head_seq + 1, "inserted", f"entries {head_seq + 1}..{last} are past the head "
                                                 f"(entry {head_seq}): appended outside Countersign")
    if head_seq > last:
        return Problem(last + 1, "removed", f"entries {last + 1}..{head_seq} were removed from the end "
                                            f"(the head is at entry {head_seq})")
    if head_hash != out.last_hash:
        return Problem(last, "head", f"the head's hash {head_hash} is not entry {last}'s {out.last_hash}: "
                                     "the last entry or the head was rewritten")
    return None
