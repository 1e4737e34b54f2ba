"""Fire an action's due escalation steps: page a level, remind it, or time the action out.

Runs inside the caller's transaction (submission, or the sweeper's claim), so the step record,
the state change, the ledger entry and the outbox messages commit together or not at all. The
caller holds the action's row (the sweeper's FOR UPDATE claim on PostgreSQL, the writer lock on
SQLite), and the unique (action, step) record refuses any second firing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.delivery.callbacks import queue_callback
from bot.delivery.messages import Kind, card_purpose, reminder_purpose, send, update_cards
from bot.escalation.home_refresh import refresh_after_steps
from bot.escalation.plan import DueStep, failed_key, plan
from bot.escalation.snapshot import snapshot_of
from storage.ledger import chain as ledger
from storage.models import Action
from storage.queries import actions as repo
from storage.queries import trust_rollup
from storage.queries.sweep import lock_action, record_step

# Pages, failures and the timeout can make more steps due at once (fail closed brings the next
# level forward); a chain has at most three levels, so a few rounds always settle it.
MAX_ROUNDS = 8
# Outbox messages and the action's new state, applied after the ledger entries: a sweep that
# defers them for a whole batch writes them in one flush (multi-row INSERT, executemany UPDATE)
# instead of one flush per action (every ledger append flushes the session).
Effects = list[Callable[[], object]]


async def advance(
    session: AsyncSession,
    action: Action,
    now: datetime,
    *,
    fired: dict[str, datetime] | None = None,
    recorded: set[str] | None = None,
    effects: Effects | None = None,
) -> list[DueStep]:
    """Fire every step of `action` that is due at `now`, exactly once; set `level` and `next_at`.

    A sweep working on a batch passes what it loaded and did for the whole batch: `fired` (step
    key -> when), `recorded` (the due steps its one multi-row insert just recorded for this action)
    and `effects` (it applies them after the last action). Returns the steps this call fired.
    """
    if action.status != "pending" or action.id is None:
        action.next_at = None
        return []
    chain = snapshot_of(action).chain
    fired = dict(fired) if fired is not None else await repo.fired_steps(session, action.id)
    prerecorded = set(recorded or ())
    pending_effects: Effects = [] if effects is None else effects
    known = set(fired)
    done: list[DueStep] = []
    # The level reached is written with next_at at the end: one UPDATE of the row per sweep.
    reached = action.level
    settled = None  # the plan that found nothing more due: its next_at is the answer
    for _ in range(MAX_ROUNDS):
        current = plan(chain, action.created_at, fired, now)
        due = current.due
        if not due or action.status != "pending":
            settled = current if not due else None
            break
        for step in due:
            if step.key in prerecorded:
                prerecorded.discard(step.key)
            elif not await record_step(session, action.id, step.key, level=step.level, due_at=step.at,
                                       now=now, note=step.note):
                fired = await repo.fired_steps(session, action.id)  # fired elsewhere: re-plan from truth
                break
            fired[step.key] = now
            done.append(step)
            reached = step.level if step.kind == "page" else reached
            await _fire(session, action, step, fired, now, pending_effects, due)
            if action.status != "pending":
                break
    escalated = any(s.kind == "timeout" or (s.kind == "page" and s.level != "owner") for s in done)
    escalated = escalated or any(key.startswith("failed:") for key in set(fired) - known)
    pending = action.status == "pending"
    next_at = (settled or plan(chain, action.created_at, fired, now)).next_at if pending else None
    pending_effects.append(partial(_settle, session, action, reached, next_at, now, done, escalated))
    if effects is None:
        for effect in pending_effects:
            effect()
    return done


def _settle(session: AsyncSession, action: Action, level: str | None, next_at: datetime | None,
            now: datetime, done: list[DueStep], escalated: bool) -> None:
    """The action's new escalation state, and the messages that follow from it."""
    assert action.id is not None
    if escalated:
        update_cards(session, action.id)  # earlier copies show that it escalated, and to whom
    action.level, action.next_at, action.updated_at = level, next_at, now
    session.add(action)
    refresh_after_steps(session, action, done)  # App Homes of the people paged or defaulted


async def fail_level(session: AsyncSession, action: Action, level: str, reason: str, now: datetime) -> None:
    """Paging `level` failed for good: record why and page the next level at once (fail closed).

    Called by the outbox relay after a permanent Slack error; takes the action's row first so it
    cannot cross a sweeper or a response working on the same action.
    """
    assert action.id is not None
    locked = await lock_action(session, action.id)
    if locked is None or locked.status != "pending":
        return
    fired = await repo.fired_steps(session, action.id)
    if failed_key(level) in fired:
        return
    recorded = await _record_failure(session, locked, level, reason, fired, now)
    if recorded and not await advance(session, locked, now, fired=fired):
        update_cards(session, action.id)  # nothing left to page: the cards still show why


async def _record_failure(
    session: AsyncSession, action: Action, level: str, reason: str, fired: dict[str, datetime], now: datetime
) -> bool:
    assert action.id is not None
    if not await record_step(session, action.id, failed_key(level), level=level, due_at=now, now=now,
                             note=reason):
        return False
    fired[failed_key(level)] = now
    await ledger.append(session, "page.failed", {"level": level, "reason": reason},
                        action_id=action.id, at=now)
    return True


async def _fire(
    session: AsyncSession, action: Action, step: DueStep, fired: dict[str, datetime], now: datetime,
    effects: Effects, due: tuple[DueStep, ...] = (),
) -> None:
    assert action.id is not None
    late = max(0.0, (now - step.at).total_seconds())
    snapshot = snapshot_of(action)
    if step.kind == "skip":
        await ledger.append(session, "escalation.skipped",
                            {"level": step.level, "due_at": step.at, "late_seconds": round(late, 3),
                             "reason": step.note}, action_id=action.id, at=now)
    elif step.kind == "page":
        assert step.level is not None
        target = snapshot.target(step.level)
        await ledger.append(
            session,
            "escalation.page",
            {"level": step.level, "target": target, "due_at": step.at, "late_seconds": round(late, 3)},
            action_id=action.id,
            at=now,
        )
        if step.level == "owner" and snapshot.channel:
            effects.append(partial(send, session, Kind.CARD, channel=snapshot.channel, action_id=action.id,
                                   purpose=card_purpose(None)))
        if target:
            effects.append(partial(send, session, Kind.CARD, channel=target, action_id=action.id,
                                   purpose=card_purpose(step.level), level=step.level))
        else:
            await _record_failure(session, action, step.level, f"no {step.level} configured", fired, now)
    elif step.kind == "remind":
        assert step.level is not None
        await ledger.append(session, "escalation.reminder",
                            {"level": step.level, "step": step.key, "late_seconds": round(late, 3)},
                            action_id=action.id, at=now)
        target = snapshot.target(step.level)
        if target:
            effects.append(partial(send, session, Kind.REMINDER, channel=target, action_id=action.id,
                                   purpose=reminder_purpose(step.key), level=step.level))
    elif step.kind == "timeout":
        await _time_out(session, action, step, now)
        skipped = [s.level for s in due if s.kind == "skip" and s.level]
        if skipped:
            _expired_while_down(session, action, step, skipped, now, effects)


def _expired_while_down(session: AsyncSession, action: Action, step: DueStep, skipped: Sequence[str],
                        now: datetime, effects: Effects) -> None:
    """The whole chain passed while no process ran: one notice, where the last level would have been
    paged (no mention: nobody needs to act any more), instead of a page per level."""
    assert action.id is not None
    channel = snapshot_of(action).target(step.level) if step.level else None
    channel = channel or snapshot_of(action).channel
    if not channel:
        return
    ended = (f"it {action.status} ({action.outcome} by default)" if action.status != "pending"
             else "accountability defaulted (still open for an acknowledgement)")
    text = (f":hourglass: Action {action.id} reached its timeout while Countersign was not running "
            f"(due {step.at:%Y-%m-%d %H:%M:%S} UTC, handled {round((now - step.at).total_seconds())}s late): "
            f"{ended}. Paging {', '.join(skipped)} was skipped, since nobody could still act in time.")
    effects.append(partial(send, session, Kind.NOTICE, channel=channel, action_id=action.id,
                           purpose="notice:expired_while_down", text=text))


async def _time_out(session: AsyncSession, action: Action, step: DueStep, now: datetime) -> None:
    """A proposal gets on_timeout (deny unless the policy says approve); an executed action stays
    open, with accountability defaulting to the last level reached (a later acknowledge still wins)."""
    assert action.id is not None
    late = round(max(0.0, (now - step.at).total_seconds()), 3)
    level = step.level
    snapshot = snapshot_of(action)
    by, name = snapshot.default_decider(level)
    decision: dict[str, Any] = {
        "decided_at": now,
        "decided_by": by,
        "decided_by_name": name,
        "accountability": "default",
        "decision_level": level,
        "decision_via": "timeout",
    }
    if action.kind == "proposed":
        outcome = "approved" if snapshot.on_timeout == "approve" else "denied"
        decision["decision_reason"] = f"no response before the timeout; on_timeout: {snapshot.on_timeout}"
        if not await repo.decide(session, action.id, expect_status="pending", status="expired",
                                 outcome=outcome, next_at=None, **decision):
            return  # a response won the row first
        action.status, action.outcome = "expired", outcome
    else:
        decision["decision_reason"] = "not acknowledged before the timeout; accountability defaults"
        action.outcome = "unacknowledged"
        # `default` accountability now: the action's day in the track record's rollup is stale if it ended
        await trust_rollup.mark(session, action.created_at, now)
    for key, value in decision.items():
        setattr(action, key, value)
    session.add(action)
    await ledger.append(
        session,
        "decision",
        {"outcome": action.outcome, "by": by, "accountability": "default", "level": level, "via": "timeout",
         "reason": decision["decision_reason"], "late_seconds": late},
        action_id=action.id,
        actor=by,
        at=now,
    )
    queue_callback(session, action)
