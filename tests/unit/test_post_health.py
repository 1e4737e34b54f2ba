"""The rule behind /healthz's `paging` check for posts-only faults (bot/api/post_health.py): three
failed chat.postMessage attempts in a row (5xx, Slack "trouble", no answer), the newest under
120 s old, say degraded; the next successful post says ok again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.api.post_health import PostAttempt, posts_verdict, slack_failed
from bot.delivery.pacing import TOKEN_TTL, fresh_token_needed

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def ok(seconds_ago: float = 1.0) -> PostAttempt:
    return PostAttempt(True, None, 200, NOW - timedelta(seconds=seconds_ago))


def failed(error: str = "HTTP 500: no answer", status: int | None = 500, seconds_ago: float = 1.0) -> PostAttempt:
    return PostAttempt(False, error, status, NOW - timedelta(seconds=seconds_ago))


@pytest.mark.parametrize(("attempt", "verdict"), [
    (failed(), True),
    (failed("HTTP 503: service_unavailable", 503), True),
    (failed("HTTP 200: internal_error", 200), True),  # ok: false, Slack says it is struggling
    (failed("HTTP 200: fatal_error", 200), True),
    (failed("no answer: TimeoutError", None), True),
    (failed("no answer: ClientConnectorError: Cannot connect to host", None), True),
    (ok(), False),
    (failed("channel_not_found", 200), False),  # Slack answered: that channel is the problem
    (failed("ratelimited (Retry-After 1s)", 429), None),  # busy, not down
    (failed("RuntimeError: a bug", None), None),  # ours, says nothing about Slack
])
def test_what_counts_as_a_failed_post(attempt: PostAttempt, verdict: bool | None) -> None:
    assert slack_failed(attempt) is verdict


def test_three_failures_in_a_row_degrade_and_name_the_method() -> None:
    assert posts_verdict([], NOW) == "ok"
    assert posts_verdict([failed(), failed()], NOW) == "ok"
    run = [failed(), failed("no answer: TimeoutError", None), failed("HTTP 200: internal_error", 200)]
    verdict = posts_verdict(run, NOW)
    assert verdict.startswith("chat.postMessage failing: the last 3 posts failed")
    assert "HTTP 500" in verdict and "TimeoutError" in verdict and "internal_error" in verdict


def test_a_successful_post_ends_the_run() -> None:
    assert posts_verdict([ok(0.5), failed(), failed(), failed()], NOW) == "ok"
    assert posts_verdict([failed(), failed(), ok(), failed(), failed()], NOW) == "ok"
    assert posts_verdict([failed(), failed(), failed("channel_not_found", 200), failed()], NOW) == "ok"


def test_a_429_or_a_bug_in_between_neither_counts_nor_ends_the_run() -> None:
    busy = failed("ratelimited (Retry-After 1s)", 429)
    assert posts_verdict([failed(), busy, failed(), busy], NOW) == "ok"
    assert posts_verdict([failed(), busy, failed(), failed("TypeError: x", None), failed(), ok()], NOW) != "ok"


def test_only_while_the_newest_failure_is_under_120_seconds_old() -> None:
    run = [failed(seconds_ago=119.0), failed(seconds_ago=125.0), failed(seconds_ago=130.0)]
    assert "newest 119s ago" in posts_verdict(run, NOW)
    assert posts_verdict([failed(seconds_ago=120.0)] * 3, NOW) == "ok"
    assert posts_verdict([failed(seconds_ago=500.0)] * 5, NOW) == "ok"


def test_a_post_leaving_late_or_under_another_key_takes_a_fresh_token() -> None:
    """The pacing side of the soak (bot/delivery/pacing.py): a token counted at claim time holds
    for TOKEN_TTL seconds, and only for the key it was counted under."""
    assert not fresh_token_needed(("C0LEADERS", 100.0), "C0LEADERS", 100.0 + TOKEN_TTL)
    assert fresh_token_needed(("C0LEADERS", 100.0), "C0LEADERS", 100.0 + TOKEN_TTL + 0.01)  # left late
    assert fresh_token_needed(("dana@example.com", 100.0), "U0DANA", 100.1)  # resolved as it left
    assert fresh_token_needed(None, "C0LEADERS", 100.0)
