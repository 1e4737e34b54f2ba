"""`countersign policy check`: which rule every service and action type falls under."""

from __future__ import annotations

from bot.escalation.snapshot import freeze
from bot.policy.rules import Policy, evaluate, rule_label


def _action_types(policy: Policy) -> list[str]:
    """Every action type the rules name, plus '*' for any other."""
    names: list[str] = []
    for rule in policy.rules:
        want = rule.match.action_type if rule.match else None
        for name in [want] if isinstance(want, str) else want or []:
            if name not in names:
                names.append(name)
    return [*names, "*"]


def duration(seconds: float | None, none: str = "none") -> str:
    """Seconds as the policy file writes them (300 -> 5m, 5400 -> 1h30m): the report printed
    `remind_every 120.0; timeout 1800.0` beside a chain it wrote as `secondary@300s`."""
    if seconds is None:
        return none
    if seconds != int(seconds):
        return f"{seconds:g}s"
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def report(policy: Policy, source: str) -> str:
    lines = [f"{source}: OK — {len(policy.services)} services, {len(policy.tiers)} tiers, "
             f"{len(policy.rules)} rules"]
    types = _action_types(policy)
    for name, svc in policy.services.items():
        snapshot = freeze(policy, name, evaluate(policy, name, "*", "production"))
        chain = ", ".join(f"{level}@{duration(after)}" for level, after in snapshot.steps)
        lines.append("")
        lines.append(f"service {name} (tier {svc.tier or '-'}, owner {svc.owner}, "
                     f"channel {svc.channel or '-'})")
        lines.append(f"  escalation: {chain}; remind_every {duration(snapshot.remind_every)}; "
                     f"timeout {duration(snapshot.timeout)}; on_timeout {snapshot.on_timeout}")
        for env in ("production", "staging"):
            for action_type in types:
                m = evaluate(policy, name, action_type, env)
                lines.append(f"  {env:<10} {action_type:<20} -> {m.mode:<11} ({rule_label(m.index)})")
    return "\n".join(lines)
