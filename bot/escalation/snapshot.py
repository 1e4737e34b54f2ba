"""What an action keeps of the policy: its escalation chain and the people on it, frozen at submission.

A policy edit must never change an action already submitted, so `freeze` copies what the action
needs into `Action.frozen`, and every reader asks the `EscalationSnapshot` read back from it (who is
paged at a level, who may respond, who is accountable by default, what comes next) instead of
digging in the JSON. The JSON keeps the keys it always had, so rows written before this module
existed load unchanged; keys a row lacks take their defaults. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from bot.escalation.plan import Chain, DueStep, planned_pages, settled
from bot.policy.rules import LEVELS, Level, Policy, RuleMatch, policy_hash
from storage.models import Action

OnTimeout = Literal["deny", "approve"]

# Used when neither the service nor its tier declares an escalation chain.
DEFAULT_STEPS: tuple[tuple[Level, float], ...] = (("owner", 0.0), ("secondary", 300.0), ("leadership", 900.0))


@dataclass(frozen=True, slots=True)
class LeadershipSnapshot:
    """The policy's leadership: the channel its card goes to, and the users that card mentions."""

    channel: str | None
    users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EscalationSnapshot:
    """Everything an action needs from the policy, as `freeze` copied it (see `to_json` for the keys)."""

    steps: tuple[tuple[Level, float], ...] = ()  # (level, seconds after submission), in order
    owner: str | None = None
    secondary: str | None = None
    channel: str | None = None  # the service channel: a card when the owner is paged, or the FYI
    leadership: LeadershipSnapshot | None = None
    admins: tuple[str, ...] = ()
    remind_every: float | None = None
    timeout: float | None = None
    on_timeout: OnTimeout = "deny"
    violation: bool = False
    storm_per_minute: int | None = None
    mode: str | None = None
    rule_index: int | None = None  # None: no rule matched, the built-in default applied
    rule: Mapping[str, Any] | None = None
    policy_hash: str | None = None
    tier: str | None = None

    # --- stored form ------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> EscalationSnapshot:
        """Read `Action.frozen` back; a key missing from an old (or hand-written) row takes its default."""
        data = data or {}
        lead = data.get("leadership")
        return cls(
            steps=tuple((s["notify"], float(s["after"])) for s in data.get("steps") or ()),
            owner=data.get("owner"),
            secondary=data.get("secondary"),
            channel=data.get("channel"),
            leadership=LeadershipSnapshot(lead.get("channel"), tuple(lead.get("users") or ())) if lead else None,
            admins=tuple(data.get("admins") or ()),
            remind_every=_seconds(data.get("remind_every")),
            timeout=_seconds(data.get("timeout")),
            on_timeout="approve" if data.get("on_timeout") == "approve" else "deny",
            violation=bool(data.get("violation")),
            storm_per_minute=data.get("storm_per_minute"),
            mode=data.get("mode"),
            rule_index=data.get("rule_index"),
            rule=data.get("rule"),
            policy_hash=data.get("policy_hash"),
            tier=data.get("tier"),
        )

    def to_json(self) -> dict[str, Any]:
        """What goes into `Action.frozen` (and the `action.submitted` ledger entry): keys and order as ever."""
        lead = self.leadership
        return {
            "mode": self.mode,
            "rule_index": self.rule_index,
            "rule": dict(self.rule) if self.rule is not None else None,
            "policy_hash": self.policy_hash,
            "tier": self.tier,
            "owner": self.owner,
            "secondary": self.secondary,
            "channel": self.channel,
            "leadership": {"channel": lead.channel, "users": list(lead.users)} if lead else None,
            "admins": list(self.admins),
            "steps": [{"notify": level, "after": after} for level, after in self.steps],
            "remind_every": self.remind_every,
            "timeout": self.timeout,
            "on_timeout": self.on_timeout,
            "violation": self.violation,
            "storm_per_minute": self.storm_per_minute,
        }

    # --- the chain ---------------------------------------------------------------------------------

    @property
    def chain(self) -> Chain:
        """What `plan` takes."""
        return Chain(steps=self.steps, remind_every=self.remind_every, timeout=self.timeout,
                     on_timeout=self.on_timeout)

    def levels(self) -> tuple[Level, ...]:
        """The levels this action escalates through, in order."""
        return tuple(level for level, _ in self.steps)

    def unreachable(self, failed_levels: Iterable[str]) -> bool:
        """Every level of the chain was paged and failed for good: no human can be reached."""
        levels = self.levels()
        return bool(levels) and set(levels) <= set(failed_levels)

    def deadline(self, created_at: datetime) -> datetime | None:
        """When the action times out (None: never)."""
        return created_at + timedelta(seconds=self.timeout) if self.timeout is not None else None

    def upcoming(self, created_at: datetime, fired: Mapping[str, datetime]) -> tuple[DueStep, ...]:
        """The pages still to come, given the steps already `fired`, at the times `plan` fires them:
        brought forward after a failed page, and none planned after the timeout (it never fires)."""
        return tuple(p for p in planned_pages(self.chain, created_at, fired) if not settled(p, fired))

    def upcoming_after(self, level: str | None, created_at: datetime) -> tuple[DueStep, ...]:
        """`upcoming` for a reader that knows only the level reached (a card): the pages up to and
        including `level` count as fired."""
        levels = self.levels()
        reached = levels[: levels.index(level) + 1] if level in levels else ()
        return self.upcoming(created_at, {f"page:{lvl}": created_at for lvl in reached})

    # --- the people --------------------------------------------------------------------------------

    @property
    def leadership_users(self) -> tuple[str, ...]:
        """The leadership users, mentioned on the leadership card (none without leadership)."""
        return self.leadership.users if self.leadership else ()

    def target(self, level: str) -> str | None:
        """Where a page at `level` goes: the owner's or secondary's DM, or the leadership channel."""
        if level == "leadership":
            return self.leadership.channel if self.leadership else None
        if level == "owner":
            return self.owner
        if level == "secondary":
            return self.secondary
        return None

    def people_up_to(self, level: str | None) -> list[str]:
        """Who may respond once escalation reached `level`, admins first: the owner, the secondary once
        paged, the leadership users once at leadership (the set only grows). None: the admins alone."""
        people = list(self.admins)
        if level is None:
            return people
        order = [lvl for lvl in LEVELS if lvl in self.levels()]
        upto = order[: order.index(level) + 1] if level in order else order
        if self.owner is not None:
            people.append(self.owner)
        if "secondary" in upto and self.secondary:
            people.append(self.secondary)
        if "leadership" in upto:
            people.extend(self.leadership_users)
        return people

    def default_decider(self, level: str | None) -> tuple[str | None, str]:
        """Who `decision.by` names when nobody responded in time, as (id, level name): the last level
        reached; for leadership its first user, or its channel when it names none."""
        if level == "leadership":
            users = self.leadership_users
            return (users[0] if users else self.target("leadership")), "leadership"
        if level == "secondary":
            return self.secondary, "secondary"
        return self.owner, "owner"


# Parsed snapshots by the identity of the JSON they came from. One submission asks for its action's
# snapshot four times (advance, each step fired, the App Home refresh, first steps); parsing was
# ~2 % of ingest CPU. Keyed by id() but holding the dict itself, so an id is never reused while
# cached; the column's dict is never changed in place (a new one is assigned), so a hit is current.
_PARSED: dict[int, tuple[object, EscalationSnapshot]] = {}
_PARSED_MAX = 1024


def snapshot_of(action: Action) -> EscalationSnapshot:
    """The snapshot frozen into `action` (parsed from its JSON column once per loaded row)."""
    frozen = action.frozen
    hit = _PARSED.get(id(frozen))
    if hit is not None and hit[0] is frozen:
        return hit[1]
    snapshot = EscalationSnapshot.from_json(frozen)
    if len(_PARSED) >= _PARSED_MAX:
        _PARSED.pop(next(iter(_PARSED)), None)  # oldest first: dicts keep insertion order
    _PARSED[id(frozen)] = (frozen, snapshot)
    return snapshot


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


_HASHED: dict[int, tuple[Policy, str]] = {}


def _policy_hash(policy: Policy) -> str:
    """policy_hash, once per loaded policy (a policy is not edited in place; it was 2-3 % of ingest)."""
    known = _HASHED.get(id(policy))
    if known is None or known[0] is not policy:
        if len(_HASHED) > 16:
            _HASHED.clear()
        known = _HASHED[id(policy)] = (policy, policy_hash(policy))
    return known[1]


def freeze(policy: Policy, service: str, match: RuleMatch, *, violation: bool = False) -> EscalationSnapshot:
    """Everything an action needs from the policy, copied so later policy edits never touch it."""
    svc = policy.services[service]
    tier = policy.tiers.get(svc.tier) if svc.tier else None

    def pick(name: str) -> Any:
        value = getattr(svc, name)
        return value if value is not None else (getattr(tier, name) if tier else None)

    raw_steps = pick("escalation")
    steps: list[tuple[Level, float]] = (
        [(s.notify, s.after) for s in raw_steps] if raw_steps else list(DEFAULT_STEPS))
    present = {"owner": True, "secondary": bool(svc.secondary), "leadership": policy.leadership is not None}
    steps = [(lvl, after) for lvl, after in steps if present[lvl]]
    if not steps:
        steps = [("owner", 0.0)]
    if violation:
        # A policy violation starts at the top at once: everyone in the chain is paged now.
        steps = [(lvl, 0.0) for lvl in LEVELS if present[lvl]]
    lead = policy.leadership
    return EscalationSnapshot(
        mode=match.mode,
        rule_index=match.index,
        rule=match.rule,
        policy_hash=_policy_hash(policy),
        tier=svc.tier,
        owner=svc.owner,
        secondary=svc.secondary,
        channel=svc.channel,
        leadership=LeadershipSnapshot(lead.channel, tuple(lead.users)) if lead else None,
        admins=tuple(policy.admins),
        steps=tuple(steps),
        remind_every=pick("remind_every"),
        timeout=pick("timeout"),
        on_timeout=pick("on_timeout") or "deny",
        violation=violation,
        storm_per_minute=svc.storm_per_minute or policy.storm_per_minute,
    )
