"""Can anybody be paged? For /healthz (`degraded` with the reason on a token error, a run of
permanent Slack failures, or a run of failed posts: bot/api/post_health.py) and /metrics
(`countersign_paging_unreachable`: actions no level reached). The verdicts are pure functions of
what the database recorded, so every replica says the same."""

from __future__ import annotations

from datetime import datetime

from bot.api.post_health import PostAttempt, posts_verdict
from bot.delivery.failures import PERMANENT_ERRORS
from bot.escalation.snapshot import snapshot_of
from bot.services import Services
from storage.queries import paging

# Slack refuses the bot token itself: no message can go anywhere until someone fixes it.
TOKEN_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
                          "not_allowed_token_type", "org_login_required", "ekm_access_denied",
                          "team_access_not_granted", "missing_scope"})
PERMANENT_RUN = 3  # this many permanent failures in a row, and no success since: degraded
LOOK_BACK = 20


def slack_verdict(attempts: list[tuple[bool, str | None, datetime]]) -> str:
    """"ok", or why paging is failing, from the latest Slack attempts (newest first)."""
    run: list[str] = []
    for ok, error, at in attempts:
        if ok:
            break
        code = (error or "").split(":", 1)[0].strip()
        if code in TOKEN_ERRORS:
            return (f"Slack refuses the bot token ({code}, {at:%H:%M:%S} UTC): nobody can be paged; "
                    "fix SLACK_BOT_TOKEN, then `countersign deliveries retry --all`")
        if code in PERMANENT_ERRORS:
            run.append(code)
    if len(run) >= PERMANENT_RUN:
        return (f"the last {len(run)} Slack deliveries failed for good ({', '.join(sorted(set(run)))}); "
                "see `countersign deliveries list --failed`")
    return "ok"


async def unreachable_actions(svc: Services) -> list[int]:
    """The pending actions whose every level was paged and failed."""
    async with svc.db.read_session() as session:
        rows = await paging.pending_with_failed_pages(session)
    return [a.id for a, failed in rows if a.id is not None and snapshot_of(a).unreachable(failed)]


async def probe(svc: Services) -> str:
    """/healthz's `paging` check."""
    async with svc.db.read_session() as session:
        attempts = await paging.latest_slack_attempts(session, LOOK_BACK)
    verdict = slack_verdict([(ok, error, at) for ok, error, _, at in attempts])
    posts = posts_verdict([PostAttempt(*row) for row in attempts], svc.clock())
    if posts != "ok":  # only chat.postMessage failing: the breaker, reset by other methods, missed it
        verdict = posts if verdict == "ok" else f"{verdict}; {posts}"
    unreachable = await unreachable_actions(svc)
    svc.metrics.paging_unreachable.set(len(unreachable))
    if unreachable:
        shown = ", ".join(str(i) for i in unreachable[:10]) + (" …" if len(unreachable) > 10 else "")
        where = f"{len(unreachable)} pending action(s) no level could be paged for ({shown})"
        return where if verdict == "ok" else f"{verdict}; {where}"
    return verdict


async def refresh_metrics(svc: Services) -> None:
    svc.metrics.paging_unreachable.set(len(await unreachable_actions(svc)))
