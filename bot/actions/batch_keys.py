"""A group-committed batch's Idempotency-Keys (bot.actions.writer): a key held already answered from
its stored response, a second submission of the same key in the same batch answered like the
first, and the free keys written with their answers in one statement at the end of the batch.

Optimistic first (`check`, then `write_answers`): one SELECT and one INSERT, where claiming first
took an INSERT and an UPDATE of every key row (the UPDATE rewrote each row with its body: on
PostgreSQL the larger part of what a keyed submission cost the database). If another transaction
took one of the keys in between, the batch is written again, claiming first (`claim`)."""

from __future__ import annotations

from typing import Any

from bot.actions.idempotency import ABANDONED_AFTER, Answer
from bot.actions.submit import Prepared, raise_or_return
from bot.contract.errors import ApiError
from storage.queries import ingest


class _Single:
    """This submission goes through the single path after the batch (an abandoned key to take over)."""


SINGLE = _Single()
Result = Answer | ApiError | _Single


def _firsts(preps: list[Prepared], results: list[Result | None]
            ) -> tuple[dict[tuple[int, str], int], dict[int, int]]:
    """(agent id, key) -> the index of its first submission in the batch; follower index -> that
    first index (a second submission of the same key in the same batch)."""
    first: dict[tuple[int, str], int] = {}
    followers: dict[int, int] = {}
    for i, prep in enumerate(preps):
        if prep.key is None or results[i] is not None:
            continue
        k = (int(prep.agent.id or 0), prep.key)
        if k in first:
            followers[i] = first[k]
        else:
            first[k] = i
    return first, followers


def _answer_held(prep: Prepared, row: ingest.StoredKey | None) -> Result:
    """The answer of a submission whose key is held already (stored answer, 409 in flight, 422 other
    body), or SINGLE: the key was freed since or was abandoned, the single path takes it over."""
    if row is None:  # freed since (a refused single-path request): let the single path run
        return SINGLE
    if row.request_hash != prep.digest:
        return ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with a different request body")
    if row.in_flight:
        fresh = prep.now - row.created_at < ABANDONED_AFTER
        return ApiError(409, "idempotency_key_in_flight", "a request with this Idempotency-Key "
                        "is still being processed; retry later") if fresh else SINGLE
    assert row.status is not None and row.body is not None
    return stored(row.status, row.body)


def keys_of(preps: list[Prepared]) -> list[tuple[int, str]]:
    """The batch's distinct (agent id, key) pairs: the keys whose rows `check` needs (read with the
    batch's first statement, storage.queries.ingest.batch_start)."""
    return list(dict.fromkeys((int(p.agent.id or 0), p.key) for p in preps if p.key is not None))


def check(preps: list[Prepared], results: list[Result | None], held: dict[tuple[int, str], ingest.StoredKey]
          ) -> tuple[dict[int, tuple[int, str]], dict[int, int]]:
    """Optimistic: answer the submissions whose keys are `held` already here. Returns (index -> its
    free (agent id, key), written with the answer at the end: `write_answers`; follower index -> its
    first index). No claim row is written first and none is updated after."""
    first, followers = _firsts(preps, results)
    free: dict[int, tuple[int, str]] = {}
    for k, i in first.items():
        if k in held:
            results[i] = _answer_held(preps[i], held[k])
        else:
            free[i] = k
    return free, followers


class KeysRaced(Exception):
    """A key the batch found free was claimed by another transaction before the batch wrote it: the
    batch is rolled back and written again with its keys claimed first (`claim`)."""


async def write_answers(session: Any, preps: list[Prepared], free: dict[int, tuple[int, str]],
                        answers: dict[int, Answer]) -> None:
    """The free keys with their answers, in one statement; raises KeysRaced if one was taken meanwhile."""
    rows = [(a, k, preps[i].digest or "", *answers[i]) for i, (a, k) in free.items() if i in answers]
    written = await ingest.insert_answered_keys(session, rows, preps[0].now)
    if len(written) != len(rows):
        raise KeysRaced(f"{len(rows) - len(written)} of {len(rows)} keys were claimed meanwhile")


async def claim(session: Any, preps: list[Prepared], results: list[Result | None]
                ) -> tuple[dict[int, int], dict[int, int]]:
    """Pessimistic (after KeysRaced): claim the batch's Idempotency-Keys in one statement first.
    Returns (index -> claimed key row id, follower index -> its first index); a key held already
    answers its submission here."""
    first, followers = _firsts(preps, results)
    claimed = await ingest.claim_keys(session, [(a, k, preps[i].digest or "") for (a, k), i in first.items()],
                                      preps[0].now)
    held = await ingest.held_keys(session, [k for k in first if k not in claimed])
    key_ids: dict[int, int] = {}
    for k, i in first.items():
        if k in claimed:
            key_ids[i] = claimed[k]
        else:
            results[i] = _answer_held(preps[i], held.get(k))
    return key_ids, followers


def follow(prep: Prepared, first: Prepared, result: Result | None) -> Result:
    """A second submission with the first's key in the same batch: the same answer (the draft's
    "same response"), or 422 if its body differs."""
    if prep.digest != first.digest:
        return ApiError(422, "idempotency_key_reused",
                        "this Idempotency-Key was used with a different request body")
    assert result is not None
    return result


def stored(status: int, body: dict[str, Any]) -> Result:
    """A stored answer as the batch hands it back: the 2xx, or its refusal as an ApiError."""
    try:
        return raise_or_return(status, body)
    except ApiError as exc:
        return exc
