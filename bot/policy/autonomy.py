"""Autonomy that moves with evidence, as pure functions: which grant and pause apply to a new action,
what a track record suggests, and whether the brake trips. No I/O, no clock (`now` is passed in).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.policy.durations import written
from bot.policy.rules import Autonomy, Brake, Mode, Policy, RuleMatch, evaluate

# From the loosest to the strictest: a promotion moves left, a demotion right.
STRICTNESS: tuple[str, ...] = ("autonomous", "acknowledge", "approve", "forbidden")


def stricter(a: str, b: str) -> str:
    return a if STRICTNESS.index(a) >= STRICTNESS.index(b) else b


@dataclass(frozen=True, slots=True)
class GrantInForce:
    id: int
    agent: str
    service: str
    action_type: str
    environment: str
    kind: str  # promote | demote
    mode: str
    by: str
    until: datetime

    def key(self) -> tuple[str, str, str, str]:
        return (self.agent, self.service, self.action_type, self.environment)


@dataclass(frozen=True, slots=True)
class PauseInForce:
    id: int
    target: str
    service: str | None  # None: every service
    agent: str | None  # None: every agent
    by: str
    reason: str
    until: datetime | None

    def holds_for(self, agent: str, service: str) -> bool:
        return self.service in (None, service) and self.agent in (None, agent)

    def json(self) -> dict[str, Any]:
        return {"id": self.id, "target": self.target, "by": self.by, "reason": self.reason,
                "until": self.until.isoformat().replace("+00:00", "Z") if self.until else None}


@dataclass(frozen=True, slots=True)
class InForce:
    """Grants and pauses not revoked nor ended (the caller's cache may hold some past `until`:
    every reader filters by `now` again)."""

    grants: tuple[GrantInForce, ...] = ()
    pauses: tuple[PauseInForce, ...] = ()

    def live_pauses(self, now: datetime) -> list[PauseInForce]:
        return [p for p in self.pauses if p.until is None or p.until > now]

    def live_grants(self, now: datetime) -> list[GrantInForce]:
        return [g for g in self.grants if g.until > now]

    def at_service(self, service: str, now: datetime) -> tuple[list[PauseInForce], list[GrantInForce]]:
        """What changes `service`'s modes now: the pauses that hold there (its own, an agent's
        everywhere or there, `all`) and its grants in force (the service page, `/ai-actions service`)."""
        return ([p for p in self.live_pauses(now) if p.service in (None, service)],
                [g for g in self.live_grants(now) if g.service == service])


@dataclass(frozen=True, slots=True)
class Applied:
    match: RuleMatch  # what is frozen into the action
    grant: GrantInForce | None = None
    pause: PauseInForce | None = None


def apply(match: RuleMatch, in_force: InForce, *, agent: str, service: str, action_type: str,
          environment: str, now: datetime) -> Applied:
    """The file's rule, then a grant for exactly this agent x service x action_type x environment
    (the newest), then a pause (approve). `forbidden` is never relaxed."""
    if match.mode == "forbidden":
        return Applied(match)
    mode: str = match.mode
    rule = dict(match.rule)
    key = (agent, service, action_type, environment)
    grants = sorted((g for g in in_force.live_grants(now) if g.key() == key), key=lambda g: g.id)
    grant = grants[-1] if grants else None
    if grant is not None:
        mode = grant.mode
        rule = {**rule, "mode": mode, "grant": {"id": grant.id, "kind": grant.kind, "by": grant.by,
                                                 "until": grant.until.isoformat(), "rule_mode": match.mode}}
    pause = next((p for p in in_force.live_pauses(now) if p.holds_for(agent, service)), None)
    if pause is not None and mode != "approve":
        rule = {**rule, "mode": "approve", "paused": pause.json(), "unpaused_mode": mode}
        mode = "approve"
    elif pause is not None:
        rule = {**rule, "paused": pause.json()}
    if mode == match.mode and grant is None and pause is None:
        return Applied(match)
    return Applied(RuleMatch(index=match.index, mode=mode, rule=rule), grant, pause)  # type: ignore[arg-type]


# --- track record -> suggestions ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One agent x service x action_type x environment over a window (storage.queries.trust)."""

    agent: str
    service: str
    action_type: str
    environment: str
    actions: int = 0
    approved: int = 0
    denied: int = 0
    overridden: int = 0
    acknowledged: int = 0
    expired: int = 0
    recorded: int = 0
    pending: int = 0
    defaults: int = 0
    violations: int = 0
    median_decision_seconds: float | None = None
    median_approximate: bool = False  # read from the daily rollup's histogram: within 9 %
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0

    @property
    def decisions(self) -> int:
        """Human decisions: approvals, acknowledgements and overrides."""
        return self.approved + self.acknowledged + self.denied + self.overridden

    @property
    def overrides(self) -> int:
        return self.denied + self.overridden

    @property
    def approval_rate(self) -> float | None:
        return (self.approved + self.acknowledged) / self.decisions if self.decisions else None

    @property
    def override_rate(self) -> float | None:
        return self.overrides / self.decisions if self.decisions else None

    @property
    def bad_results(self) -> int:
        return self.failed + self.rolled_back

    def key(self) -> tuple[str, str, str, str]:
        return (self.agent, self.service, self.action_type, self.environment)

    def figures(self) -> dict[str, Any]:
        return {"actions": self.actions, "decisions": self.decisions, "approval_rate": self.approval_rate,
                "override_rate": self.override_rate, "failed_results": self.bad_results,
                "defaults": self.defaults, "violations": self.violations}


@dataclass(frozen=True, slots=True)
class Suggestion:
    kind: str  # promote | demote
    agent: str
    service: str
    action_type: str
    environment: str
    mode_now: str
    mode_suggested: str
    figures: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def key(self) -> tuple[str, str, str, str]:
        return (self.agent, self.service, self.action_type, self.environment)

    def token(self) -> str:
        """What a Grant / Dismiss button carries (Slack allows 2000 characters in a value)."""
        return "|".join((self.kind, self.agent, self.service, self.action_type, self.environment,
                          self.mode_suggested))


def mode_now(policy: Policy, in_force: InForce, record: Record, now: datetime) -> str:
    """The mode a suggestion starts from: the file's rule, then a grant. Not a pause: it is a brake
    for a while, not the mode the figures argue about (under a pause every mode reads `approve`, so
    "approve -> acknowledge" would be suggested for a rule that is `acknowledge` already)."""
    match = evaluate(policy, record.service, record.action_type, record.environment, "proposed")
    if match.mode == "forbidden":
        return "forbidden"
    return apply(match, InForce(grants=in_force.grants), agent=record.agent, service=record.service,
                 action_type=record.action_type, environment=record.environment, now=now).match.mode


def promotion(record: Record, mode: str, autonomy: Autonomy) -> Suggestion | None:
    """One step looser, when the long window's figures all meet `promote`."""
    rules = autonomy.promote
    if mode in ("autonomous", "forbidden") or mode not in STRICTNESS:
        return None
    rate = record.approval_rate
    if record.decisions < rules.min_decisions or rate is None or rate < rules.min_approval_rate:
        return None
    if record.bad_results > rules.max_failed_results:
        return None
    looser = STRICTNESS[STRICTNESS.index(mode) - 1]
    why = (f"{record.decisions} decisions (≥ {rules.min_decisions}), approval {rate:.0%} "
           f"(≥ {rules.min_approval_rate:.0%}), {record.bad_results} failed results (≤ {rules.max_failed_results})")
    return Suggestion("promote", *record.key(), mode_now=mode, mode_suggested=looser, figures=record.figures(),
                      why=why)


def demotion(record: Record, mode: str, autonomy: Autonomy) -> Suggestion | None:
    """One step stricter (at most `approve`), when the short window's figures reach `demote`."""
    rules = autonomy.demote
    if mode in ("approve", "forbidden") or mode not in STRICTNESS:
        return None
    rate = record.override_rate
    reasons = []
    if rate is not None and record.decisions and rate >= rules.max_override_rate:
        reasons.append(f"override rate {rate:.0%} (≥ {rules.max_override_rate:.0%})")
    if record.bad_results >= rules.max_failed_results:
        reasons.append(f"{record.bad_results} failed results (≥ {rules.max_failed_results})")
    if not reasons:
        return None
    tighter = STRICTNESS[STRICTNESS.index(mode) + 1]
    return Suggestion("demote", *record.key(), mode_now=mode, mode_suggested=tighter, figures=record.figures(),
                      why=", ".join(reasons))


def suggestions(policy: Policy, in_force: InForce, long: list[Record], short: list[Record],
                now: datetime) -> list[Suggestion]:
    """Promotions from the long window (`autonomy.window`), demotions from the short one (`demote.window`).
    The figures are checked first, so the mode (rules, grants, pauses) is worked out only for the few
    records that could be suggested."""
    autonomy = policy.autonomy
    if autonomy is None:
        return []
    found: list[Suggestion] = []
    demoted = set()
    for record in short:
        if record.service in policy.services and demotion(record, "autonomous", autonomy) is not None:
            s = demotion(record, mode_now(policy, in_force, record, now), autonomy)
            if s is not None:
                found.append(s)
                demoted.add(s.key())
    for record in long:
        if (record.service in policy.services and record.key() not in demoted
                and promotion(record, "approve", autonomy) is not None):
            s = promotion(record, mode_now(policy, in_force, record, now), autonomy)
            if s is not None:
                found.append(s)
    return found


# --- the brake -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Trip:
    reason: str


def brake_trips(brake: Brake | None, overrides: int, failed_results: int) -> Trip | None:
    """Whether an agent's overrides or failed results for a service within the window reach the limit."""
    if brake is None:
        return None
    window = written(brake.window)
    if brake.max_overrides is not None and overrides >= brake.max_overrides:
        return Trip(f"automatic brake: {overrides} overrides within {window} (limit {brake.max_overrides})")
    if brake.max_failed_results is not None and failed_results >= brake.max_failed_results:
        return Trip(f"automatic brake: {failed_results} failed or rolled back results within {window} "
                    f"(limit {brake.max_failed_results})")
    return None


def mode_is(value: str) -> Mode:
    assert value in STRICTNESS
    return value  # type: ignore[return-value]
