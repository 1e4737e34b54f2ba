"""Fire an action's due escalation steps: page a level, remind it, or time the action out.

Runs inside the caller's transaction (submission, or the sweeper's claim), so the step record,
the state change, the ledger entry and the outbox messages commit together or not at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.callbacks import queue_callback
from bot.escalation import Chain, DueStep, failed_key, plan
from bot.messages import Kind, send, update_cards
from storage import actions as repo
from storage import ledger
from storage.models import Action


def _level_target(frozen: dict[str, Any], level: str) -> str | None:
    """Where a level is paged: the owner's or secondary's DM, or the leadership channel."""
    if level == "leadership":
        return (frozen.get("leadership") or {}).get("channel")
    return frozen.get(level)


def default_decider(frozen: dict[str, Any], level: str | None) -> tuple[str | None, str]:
    """Who is accountable by default at a level: (slack id, display name)."""
    if level == "leadership":
        lead = frozen.get("leadership") or {}
        users = lead.get("users") or []
        return (users[0] if users else lead.get("channel")), "leadership"
    if level == "secondary":
        return frozen.get("secondary"), "secondary"
    return frozen.get("owner"), "owner"


async def advance(session: AsyncSession, action: Action, now: datetime) -> list[DueStep]:
    """Fire every step of `action` that is due at `now`, exactly once; set `next_at`. Returns what fired."""
    if action.status != "pending" or action.id is None:
        action.next_at = None
        return []
    chain = Chain.from_frozen(action.frozen)
    fired = await repo.fired_steps(session, action.id)
    result = plan(chain, action.created_at, fired, now)
    done: list[DueStep] = []
    for step in result.due:
        if not await repo.record_step(session, action.id, step.key, level=step.level, due_at=step.at, now=now):
            continue  # another replica fired it first
        done.append(step)
        fired[step.key] = now
        await _fire(session, action, step, now)
        if action.status != "pending":
            break
    if action.status == "pending":
        action.next_at = plan(chain, action.created_at, fired, now).next_at
    else:
        action.next_at = None
    action.updated_at = now
    session.add(action)
    return done


async def fail_level(session: AsyncSession, action: Action, level: str, reason: str, now: datetime) -> None:
    """Paging `level` failed for good: record why and make the next level due at once (fail closed)."""
    assert action.id is not None
    if await repo.record_step(session, action.id, failed_key(level), level=level, due_at=now, now=now,
                              note=reason):
        await ledger.append(session, "page.failed", {"level": level, "reason": reason},
                            action_id=action.id, at=now)
        await advance(session, action, now)


async def _fire(session: AsyncSession, action: Action, step: DueStep, now: datetime) -> None:
    assert action.id is not None
    late = max(0.0, (now - step.at).total_seconds())
    frozen = action.frozen
    if step.kind == "page":
        assert step.level is not None
        action.level = step.level
        target = _level_target(frozen, step.level)
        await ledger.append(
            session,
            "escalation.page",
            {"level": step.level, "target": target, "due_at": step.at, "late_seconds": round(late, 3)},
            action_id=action.id,
            at=now,
        )
        if step.level == "owner" and frozen.get("channel"):
            send(session, Kind.CARD, channel=frozen["channel"], action_id=action.id, purpose="card:channel")
        if target:
            purpose = "card:leadership" if step.level == "leadership" else f"card:dm:{step.level}"
            send(session, Kind.CARD, channel=target, action_id=action.id, purpose=purpose, level=step.level)
        if step.level != "owner" or not target:
            update_cards(session, action.id)  # earlier copies show that it escalated, and to whom
        if not target:
            await fail_level(session, action, step.level, f"no {step.level} configured", now)
    elif step.kind == "remind":
        assert step.level is not None
        await ledger.append(session, "escalation.reminder", {"level": step.level, "step": step.key},
                            action_id=action.id, at=now)
        target = _level_target(frozen, step.level)
        if target:
            send(session, Kind.REMINDER, channel=target, action_id=action.id, purpose=f"remind:{step.key}",
                 level=step.level)
    elif step.kind == "timeout":
        await _time_out(session, action, step, now)


async def _time_out(session: AsyncSession, action: Action, step: DueStep, now: datetime) -> None:
    """A proposal gets on_timeout (deny unless the policy says approve); an executed action stays
    open, with accountability defaulting to the last level reached."""
    assert action.id is not None
    level = step.level or action.level
    by, name = default_decider(action.frozen, level)
    decision = {
        "decided_at": now,
        "decided_by": by,
        "decided_by_name": name,
        "accountability": "default",
        "decision_level": level,
        "decision_via": "timeout",
    }
    if action.kind == "proposed":
        outcome = "approved" if action.frozen.get("on_timeout") == "approve" else "denied"
        decision["decision_reason"] = f"no response before the timeout; on_timeout: {outcome[:-1]}"
        if not await repo.decide(session, action.id, expect_status="pending", status="expired",
                                 outcome=outcome, **decision):
            return
        action.status, action.outcome = "expired", outcome
    else:
        decision["decision_reason"] = "not acknowledged before the timeout; accountability defaults"
        action.outcome = "unacknowledged"
    for key, value in decision.items():
        setattr(action, key, value)
    session.add(action)
    await ledger.append(
        session,
        "decision",
        {"outcome": action.outcome, "by": by, "accountability": "default", "level": level, "via": "timeout",
         "reason": decision["decision_reason"]},
        action_id=action.id,
        actor=by,
        at=now,
    )
    update_cards(session, action.id)
    await queue_callback(session, action)
