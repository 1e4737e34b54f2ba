"""Whether anybody can be paged: the levels whose page failed for good, the pending actions that
no level could reach, and the latest Slack delivery attempts (for /healthz and /metrics)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Action, DeliveryAttempt, EscalationStep, OutboxMessage, SlackMessage

FAILED = "failed:"


async def failed_levels(session: AsyncSession, action_ids: list[int]) -> dict[int, dict[str, str]]:
    """action id -> {level whose page failed for good: why}."""
    if not action_ids:
        return {}
    rows = await session.execute(
        select(col(EscalationStep.action_id), col(EscalationStep.step), col(EscalationStep.note)).where(
            col(EscalationStep.action_id).in_(action_ids), col(EscalationStep.step).startswith(FAILED)))
    found: dict[int, dict[str, str]] = defaultdict(dict)
    for action_id, step, note in rows.all():
        found[action_id][step.removeprefix(FAILED)] = note or ""
    return dict(found)


async def unreachable_view(session: AsyncSession, action_ids: list[int]) -> dict[int, tuple[dict[str, str], bool]]:
    """action id -> (failed levels, whether a card is in Slack now): what the API shows."""
    failed = await failed_levels(session, action_ids)
    shown = await with_cards(session, list(failed))
    return {i: (f, i in shown) for i, f in failed.items()}


async def with_cards(session: AsyncSession, action_ids: list[int]) -> set[int]:
    """Those of `action_ids` with a card in Slack now (posted, perhaps late, after a retry)."""
    if not action_ids:
        return set()
    rows = await session.execute(
        select(col(SlackMessage.action_id)).where(col(SlackMessage.action_id).in_(action_ids)).distinct())
    return set(rows.scalars())


async def pending_with_failed_pages(session: AsyncSession) -> list[tuple[Action, dict[str, str]]]:
    """The pending actions at least one of whose pages failed for good and that have no card in
    Slack, with the levels that failed."""
    failed = (select(col(EscalationStep.action_id)).where(col(EscalationStep.step).startswith(FAILED))
              .distinct().scalar_subquery())
    rows = await session.execute(
        select(Action).where(col(Action.status) == "pending", col(Action.id).in_(failed)))
    actions = list(rows.scalars())
    ids = [a.id for a in actions if a.id is not None]
    levels, shown = await failed_levels(session, ids), await with_cards(session, ids)
    return [(a, levels.get(a.id or 0, {})) for a in actions if a.id not in shown]


async def latest_slack_attempts(session: AsyncSession, limit: int
                                ) -> list[tuple[bool, str | None, int | None, datetime]]:
    """(ok, error, status code, at) of the latest posts (pages, cards, notices) that reached Slack, newest first (a
    message skipped at send time, or an update with no card to redraw, called nobody)."""
    rows = await session.execute(
        select(col(DeliveryAttempt.ok), col(DeliveryAttempt.error), col(DeliveryAttempt.status_code),
               col(DeliveryAttempt.at), col(OutboxMessage.result))
        .join(OutboxMessage, col(OutboxMessage.id) == col(DeliveryAttempt.outbox_id))
        .where(col(OutboxMessage.target) == "slack", col(OutboxMessage.method) == "chat.postMessage")
        .order_by(col(DeliveryAttempt.id).desc()).limit(limit))
    return [(ok, error, code, at) for ok, error, code, at, result in rows.all()
            if not (ok and result in ({"skipped": True}, {"updated": []}))]
