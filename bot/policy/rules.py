"""The policy file: its schema, loading with line numbers, and first-match rule evaluation.

Pure: no I/O except `load_policy`, which reads the file.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.policy.durations import parse_duration

Mode = Literal["autonomous", "acknowledge", "approve", "forbidden"]
Level = Literal["owner", "secondary", "leadership"]
LEVELS: tuple[Level, ...] = ("owner", "secondary", "leadership")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> float:
    return parse_duration(value)


# A person in the policy: a Slack user ID (U…, or W… on Enterprise Grid) or an email that
# users.lookupByEmail resolves. Anything else ('', 'olive', '@olive') pages nobody: refused with its
# line, not discovered at the first page.
# As loose as the directory reads them (bot.delivery.directory.is_user / is_email): a policy that
# ran before must not be refused at start for a form that pages fine.
_USER_ID = re.compile(r"[UW][A-Za-z0-9]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _person(value: str) -> str:
    if not (_USER_ID.fullmatch(value) or _EMAIL.fullmatch(value)):
        raise ValueError(f"{value!r} is not a Slack user ID (like U0123ABCD) or an email")
    return value


Person = Annotated[str, AfterValidator(_person)]


class Step(_Strict):
    notify: Level
    after: float = 0.0

    _after = field_validator("after", mode="before")(_duration)


class Escalation(_Strict):
    """Escalation settings: a tier's, or a service's override of its tier's."""

    escalation: list[Step] | None = None
    remind_every: float | None = None
    timeout: float | None = None
    on_timeout: Literal["deny", "approve"] | None = None

    @field_validator("remind_every", "timeout", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)

    @field_validator("escalation")
    @classmethod
    def _ordered(cls, steps: list[Step] | None) -> list[Step] | None:
        if steps is not None:
            if not steps:
                raise ValueError("escalation needs at least one step")
            afters = [s.after for s in steps]
            if afters != sorted(afters):
                raise ValueError("escalation steps must be in order of `after`")
        return steps


class Brake(_Strict):
    """The automatic brake: an agent reaching either limit within `window` is paused for the service."""

    max_overrides: int | None = Field(default=None, ge=1)
    max_failed_results: int | None = Field(default=None, ge=1)
    window: float = 3600.0

    _window = field_validator("window", mode="before")(_duration)


class Promote(_Strict):
    min_decisions: int = Field(default=20, ge=1)
    min_approval_rate: float = Field(default=0.95, ge=0, le=1)
    max_failed_results: int = Field(default=0, ge=0)


class Demote(_Strict):
    max_override_rate: float = Field(default=0.3, ge=0, le=1)
    max_failed_results: int = Field(default=2, ge=1)
    window: float = 7 * 86400.0

    _window = field_validator("window", mode="before")(_duration)


class Autonomy(_Strict):
    """Thresholds for suggesting a promotion or demotion from an agent's track record."""

    promote: Promote = Promote()
    demote: Demote = Demote()
    window: float = 30 * 86400.0  # the track record a promotion looks at
    grant_for: float = 30 * 86400.0

    _durations = field_validator("window", "grant_for", mode="before")(_duration)


class Tier(Escalation):
    brake: Brake | None = None


class Service(Escalation):
    owner: Person
    secondary: Person | None = None
    channel: str | None = None
    tier: str | None = None
    storm_per_minute: int | None = Field(default=None, ge=1)
    brake: Brake | None = None


class Leadership(_Strict):
    channel: str
    users: list[Person] = []


StrOrList = str | list[str]


class Match(_Strict):
    tier: StrOrList | None = None
    service: StrOrList | None = None
    action_type: StrOrList | None = None
    environment: StrOrList | None = None
    kind: StrOrList | None = None


class Rule(_Strict):
    match: Match | None = None
    mode: Mode
    name: str | None = None


class Policy(_Strict):
    leadership: Leadership | None = None
    admins: list[Person] = []
    tiers: dict[str, Tier] = {}
    services: dict[str, Service]
    rules: list[Rule] = []
    storm_per_minute: int = Field(default=10, ge=1)
    autonomy: Autonomy | None = None
    brake: Brake | None = None

    def brake_for(self, service: str) -> Brake | None:
        """The service's brake, else its tier's, else the policy's."""
        svc = self.services.get(service)
        if svc is None:
            return self.brake
        tier = self.tiers.get(svc.tier) if svc.tier else None
        return svc.brake or (tier.brake if tier else None) or self.brake

    def unknown_tiers(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Tier names used but not declared, with where (checked after parsing, to keep each location)."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for name, service in self.services.items():
            if service.tier is not None and service.tier not in self.tiers:
                found.append((("services", name, "tier"), f"unknown tier {service.tier!r}"))
        for i, rule in enumerate(self.rules):
            tiers = rule.match.tier if rule.match else None
            for tier in [tiers] if isinstance(tiers, str) else tiers or []:
                if tier not in self.tiers:
                    found.append((("rules", i, "match", "tier"), f"unknown tier {tier!r}"))
        return found


class PolicyError(ValueError):
    """A bad policy file: every problem with its file, line and reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- loading ------------------------------------------------------------------------------


def _line_of(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """Follow a pydantic error location through the YAML node tree to a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((kv for kv in node.value if kv[0].value == part), None)
            if found is None:
                break
            key, node = found
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _loc_text(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and p.startswith("function-")))


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise PolicyError([f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]) from exc
    if not isinstance(data, dict):
        raise PolicyError([f"{source}:1: the policy must be a mapping with `services` and `rules`"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key {loc[-1]!r}"
            elif err["type"] == "missing":
                msg = f"missing required key {loc[-1]!r}"
            problems.append(f"{source}:{_line_of(node, loc)}: {_loc_text(loc)}: {msg}")
        raise PolicyError(problems) from exc
    unknown = policy.unknown_tiers()
    if unknown:
        raise PolicyError([f"{source}:{_line_of(node, loc)}: {_loc_text(loc)}: {msg}"
                           for loc, msg in unknown])
    return policy


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError([f"{path}: cannot read the policy file: {exc.strerror}"]) from exc
    return parse_policy(text, str(path))


def policy_hash(policy: Policy) -> str:
    """Stable across versions: keys added later (autonomy, brake) count only when the file sets them."""
    data = policy.model_dump(mode="json")
    for key in ("autonomy", "brake"):
        if data.get(key) is None:
            data.pop(key, None)
    for group in ("tiers", "services"):
        for entry in data.get(group, {}).values():
            if entry.get("brake") is None:
                entry.pop("brake", None)
    return hashlib.sha256(json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


# --- evaluation ---------------------------------------------------------------------------


class RuleMatch(_Strict):
    index: int | None  # None: no rule matched, the built-in default applies
    mode: Mode
    rule: dict[str, Any]


def rule_label(index: int | None) -> str:
    """A rule as people read it: counted from 1, as it stands in the policy file (`policy check`,
    the cards, decision reasons). The API's `rule.index` counts from 0."""
    return f"rule {index + 1}" if index is not None else "no rule matched (fallback)"


# With no matching rule and no default rule, ask a human: never let the AI act alone by accident.
FALLBACK_MODE: Mode = "approve"


def _matches(want: StrOrList | None, value: str | None) -> bool:
    """Without regard to case: an agent that wrote `Production` or `DROP_DATABASE` got the catch-all
    rule (autonomous) where the policy asked for approval or forbade it."""
    if want is None:
        return True
    if value is None:
        return False
    wants = [want] if isinstance(want, str) else want
    return value.casefold() in {w.casefold() for w in wants}


def evaluate(
    policy: Policy, service: str, action_type: str, environment: str, kind: str | None = None
) -> RuleMatch:
    """First matching rule wins; a rule without `match` matches everything."""
    svc = policy.services.get(service)
    tier = svc.tier if svc else None
    for i, rule in enumerate(policy.rules):
        m = rule.match
        if m is None or (
            _matches(m.tier, tier)
            and _matches(m.service, service)
            and _matches(m.action_type, action_type)
            and _matches(m.environment, environment)
            and _matches(m.kind, kind)
        ):
            return RuleMatch(index=i, mode=rule.mode, rule=rule.model_dump(exclude_none=True))
    return RuleMatch(index=None, mode=FALLBACK_MODE, rule={"mode": FALLBACK_MODE, "fallback": True})
