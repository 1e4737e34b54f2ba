"""What the action page shows, as typed values read in one pass: the action, its escalation
(what fired, how late, what comes next), every response, the result, and its ledger entries each
with a "verified" mark recomputed from the chain. The templates only format these."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.actions.decisions import may_respond
from bot.actions.rules import allowed_responses
from bot.escalation.snapshot import EscalationSnapshot, snapshot_of
from bot.policy.rules import rule_label
from bot.services import Services
from storage.ledger.canonical import GENESIS, content_of, hash_matches
from storage.models import Action, Response
from storage.queries import actions as repo
from storage.queries import autonomy as autonomy_q
from storage.queries import pages
from storage.queries.pages import LedgerRow


@dataclass(frozen=True)
class Fired:
    """An escalation step that fired: a page, a reminder, the timeout or a failed page."""

    key: str
    kind: str  # page | remind | timeout | failed | other
    level: str | None
    target: str | None
    due_at: datetime
    fired_at: datetime
    late_seconds: float
    note: str | None


@dataclass(frozen=True)
class Upcoming:
    level: str | None
    target: str | None
    at: datetime


@dataclass(frozen=True)
class LedgerLine:
    seq: int
    at: datetime
    event: str
    actor: str | None
    data: str  # JSON, as recorded
    prev_hash: str
    hash: str
    verified: bool  # its hash matches its content and links to the entry before it


@dataclass(frozen=True)
class ResultView:
    """What the agent reported once the action ran (POST /v1/actions/{id}/result)."""

    result: str
    detail: str | None
    at: datetime | None


@dataclass
class ActionPage:
    action: Action
    agent: str
    fired: list[Fired]
    upcoming: list[Upcoming]
    deadline: datetime | None
    on_timeout: str
    responses: list[Response]
    ledger: list[LedgerLine]
    result: ResultView | None
    viewer: str
    can_respond: list[str] = field(default_factory=list)  # what this viewer may answer here
    names: dict[str, str] = field(default_factory=dict)

    @property
    def all_verified(self) -> bool:
        return bool(self.ledger) and all(line.verified for line in self.ledger)

    @property
    def rule(self) -> str:
        """The rule that set the mode, as the card names it ("rule 3") and what it says."""
        return rule_text(snapshot_of(self.action))

    @property
    def changed_by(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(the grant, the pause) that changed the rule's mode for this action, as frozen into it."""
        rule = snapshot_of(self.action).rule or {}
        grant, pause = rule.get("grant"), rule.get("paused")
        return (grant if isinstance(grant, dict) else None), (pause if isinstance(pause, dict) else None)

    @property
    def leadership_users(self) -> tuple[str, ...]:
        """Whom a page to the leadership channel mentions (the card does: the page named only the channel)."""
        return snapshot_of(self.action).leadership_users

    def people(self) -> set[str]:
        """Every Slack id or email the page mentions (to show them as names)."""
        snapshot = snapshot_of(self.action)
        ids = {self.action.owner, self.action.decided_by, snapshot.owner, snapshot.secondary,
               *snapshot.leadership_users, *snapshot.admins}
        ids |= {r.slack_user_id for r in self.responses} | {f.target for f in self.fired}
        ids |= {u.target for u in self.upcoming} | {line.actor for line in self.ledger}
        ids |= {str(changed.get("by") or "") for changed in self.changed_by if changed}
        return {i for i in ids if i}

    def channels(self) -> dict[str, str]:
        """The channels the page may name ({channel id: its role}): a page goes to the leadership
        channel, and a default at leadership without leadership users names it."""
        snapshot = snapshot_of(self.action)
        roles = {snapshot.channel: f"{self.action.service}'s channel", snapshot.target("leadership"):
                 "leadership channel"}
        return {channel: role for channel, role in roles.items() if channel}


def rule_text(snapshot: EscalationSnapshot) -> str:
    """"rule 3: tier tier1, environment production → approve" (the mode frozen into the action: a
    grant or a pause may have changed the file's; the template says which, with names). Pure."""
    rule = dict(snapshot.rule or {})
    match = rule.get("match") or {}
    conditions = ", ".join(f"{key} {'/'.join(map(str, v)) if isinstance(v, list) else v}" for key, v in match.items())
    return f"{rule_label(snapshot.rule_index)}: {conditions or 'any action'} → {snapshot.mode or rule.get('mode')}"


def verify_lines(entries: list[LedgerRow]) -> list[LedgerLine]:
    """Each entry checked on its own (content -> hash) and against the chain (prev_hash is the hash
    of the entry before it, or genesis for the first). Pure."""
    lines = []
    for e in entries:
        links = (e.before if e.seq > 1 else GENESIS) == e.prev_hash
        content = content_of(e.seq, e.at, e.event, e.action_id, e.actor, e.data)
        lines.append(LedgerLine(
            seq=e.seq, at=e.at, event=e.event, actor=e.actor,
            data=json.dumps(e.data, ensure_ascii=False, sort_keys=True), prev_hash=e.prev_hash, hash=e.hash,
            verified=links and hash_matches(e.prev_hash, content, e.hash)))
    return lines


def _kind(key: str) -> str:
    head = key.split(":", 1)[0]
    return head if head in ("page", "remind", "timeout", "failed") else "other"


async def load_action_page(svc: Services, action_id: int, viewer: str = "") -> ActionPage | None:
    """Everything but what depends on the viewer (see `may_answer`), which the page cache shares."""
    async with svc.db.read_session() as session:
        found = await repo.get_with_agent(session, action_id)
        if found is None:
            return None
        action, agent = found
        steps = await pages.steps(session, action_id)
        responses = await repo.responses(session, action_id)
        entries = await pages.ledger_with_links(session, action_id)
        reported = await autonomy_q.result_for(session, action_id)
    snapshot = snapshot_of(action)
    fired = [Fired(s.step, _kind(s.step), s.level, snapshot.target(s.level) if s.level else None, s.due_at,
                   s.fired_at, s.late_seconds, s.note) for s in steps]
    upcoming: list[Upcoming] = []
    if action.status == "pending" and action.outcome != "unacknowledged":
        done = {s.step: s.fired_at for s in steps}
        upcoming = [Upcoming(p.level, snapshot.target(p.level) if p.level else None, p.at)
                    for p in snapshot.upcoming(action.created_at, done)]
    page = ActionPage(
        action=action, agent=agent.name, fired=fired, upcoming=upcoming,
        deadline=snapshot.deadline(action.created_at) if action.status == "pending" else None,
        on_timeout=snapshot.on_timeout, responses=responses, ledger=verify_lines(entries),
        result=None if reported is None else ResultView(reported.result, reported.detail, reported.created_at),
        viewer=viewer,
    )
    return page


async def may_answer(svc: Services, action: Action, viewer: str) -> list[str]:
    """What `viewer` may answer on the page: the buttons' rules (bot.actions.decisions)."""
    if viewer[:1] in ("U", "W") and allowed_responses(action) and await may_respond(svc, action, viewer):
        return allowed_responses(action)
    return []
