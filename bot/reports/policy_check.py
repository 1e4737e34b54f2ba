"""`countersign policy check`: which rule every service and action type falls under."""

from __future__ import annotations

from bot.escalation.snapshot import freeze
from bot.policy.durations import written
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


def report(policy: Policy, source: str) -> str:
    lines = [f"{source}: OK — {len(policy.services)} services, {len(policy.tiers)} tiers, "
             f"{len(policy.rules)} rules"]
    types = _action_types(policy)
    for name, svc in policy.services.items():
        snapshot = freeze(policy, name, evaluate(policy, name, "*", "production"))
        chain = ", ".join(f"{level}@{written(after)}" for level, after in snapshot.steps)
        lines.append("")
        lines.append(f"service {name} (tier {svc.tier or '-'}, owner {svc.owner}, "
                     f"channel {svc.channel or '-'})")
        lines.append(f"  escalation: {chain}; remind_every {written(snapshot.remind_every)}; "
                     f"timeout {written(snapshot.timeout)}; on_timeout {snapshot.on_timeout}")
        for env in ("production", "staging"):
            for action_type in types:
                m = evaluate(policy, name, action_type, env)
                lines.append(f"  {env:<10} {action_type:<20} -> {m.mode:<11} ({rule_label(m.index)})")
    return "\n".join(lines)
