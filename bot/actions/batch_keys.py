"""A group-committed batch's Idempotency-Keys (bot.actions.writer): claimed in one statement, a key
held already answered from its stored response, and a second submission of the same key in the
same batch answered like the first."""

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


async def claim(session: Any, preps: list[Prepared], results: list[Result | None]
                ) -> tuple[dict[int, int], dict[int, int]]:
    """Claim the batch's Idempotency-Keys in one statement. Returns (index -> claimed key row id,
    follower index -> the index of the first submission with its key in this batch); a key held
    already answers its submission here (stored answer, 409 in flight, 422 other body)."""
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
    claimed = await ingest.claim_keys(session, [(a, k, preps[i].digest or "") for (a, k), i in first.items()],
                                      preps[0].now)
    held = await ingest.held_keys(session, [k for k in first if k not in claimed])
    key_ids: dict[int, int] = {}
    for k, i in first.items():
        if k in claimed:
            key_ids[i] = claimed[k]
            continue
        row, prep = held.get(k), preps[i]
        if row is None:  # freed since (a refused single-path request): let the single path run
            results[i] = SINGLE
        elif row.request_hash != prep.digest:
            results[i] = ApiError(422, "idempotency_key_reused",
                                  "this Idempotency-Key was used with a different request body")
        elif row.in_flight:
            fresh = prep.now - row.created_at < ABANDONED_AFTER
            results[i] = ApiError(409, "idempotency_key_in_flight", "a request with this Idempotency-Key "
                                  "is still being processed; retry later") if fresh else SINGLE
        else:
            assert row.status is not None and row.body is not None
            results[i] = stored(row.status, row.body)
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
