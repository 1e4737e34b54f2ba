"""Are posts getting through? The rule behind /healthz's `paging` check for a fault only
chat.postMessage suffers (5xx, Slack "trouble" errors, no answer) while Slack's other methods
answer: the breaker, which counts every method, is reset by those answers and stays closed, so
only the posts' own record shows it. Pure: the attempts come from the delivery record (the relay
writes one row per attempt), newest first, so every replica says the same."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from bot.delivery.failures import NO_ANSWER, SLACK_TROUBLE

FAILED_RUN = 3  # this many failed posts in a row, with no successful post since: degraded
FRESH_SECONDS = 120.0  # ... as long as the newest of them is younger than this


class PostAttempt(NamedTuple):
    """One chat.postMessage attempt as recorded."""

    ok: bool
    error: str | None
    status_code: int | None
    at: datetime


def slack_failed(attempt: PostAttempt) -> bool | None:
    """True: Slack failed this post (5xx, a "trouble" error, no answer). False: Slack took it, or
    answered with a verdict on it (a permanent error: Slack works, that channel does not). None:
    it says nothing about Slack's health (a 429 is Slack busy, not down; an unknown error)."""
    if attempt.ok:
        return False
    error = attempt.error or ""
    if attempt.status_code == 429:
        return None
    if attempt.status_code is not None and attempt.status_code >= 500:
        return True
    if error.startswith(NO_ANSWER):
        return True
    code = error.split(": ", 1)[1] if error.startswith("HTTP ") and ": " in error else error
    if code.strip() in SLACK_TROUBLE:
        return True
    return None if attempt.status_code is None or not code else False


def posts_verdict(attempts: list[PostAttempt], now: datetime) -> str:
    """"ok", or why posts are failing: FAILED_RUN failed posts in a row (newest first, nothing
    posted since), the newest under FRESH_SECONDS old. A successful post ends it at once."""
    run: list[PostAttempt] = []
    for attempt in attempts:
        failed = slack_failed(attempt)
        if failed is None:
            continue
        if not failed:
            break
        run.append(attempt)
    if len(run) < FAILED_RUN:
        return "ok"
    age = (now - run[0].at).total_seconds()
    if age >= FRESH_SECONDS:
        return "ok"
    errors = sorted({(a.error or "unknown")[:60] for a in run})
    return (f"chat.postMessage failing: the last {len(run)} posts failed ({'; '.join(errors)}), "
            f"the newest {max(age, 0.0):.0f}s ago; nobody is being paged until a post gets through")
