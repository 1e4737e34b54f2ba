"""What the stats say, as plain data (no queries): the figures bot.reports.stats folds from the
database and the Block Kit builders draw, so the builders need nothing that does I/O."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from storage.models import Action


@dataclass
class Rates:
    """One agent's or service's decisions: how often a human approved, overrode, or never answered."""

    total: int = 0
    approved: int = 0
    overridden: int = 0
    defaulted: int = 0
    pending: int = 0
    recorded: int = 0

    @property
    def decided(self) -> int:
        return self.approved + self.overridden + self.defaulted

    def rate(self, count: int) -> float | None:
        return count / self.decided if self.decided else None


@dataclass
class Stats:
    since: datetime
    until: datetime
    total: int = 0
    by_mode: Counter[str] = field(default_factory=Counter)
    by_outcome: Counter[str] = field(default_factory=Counter)
    by_mode_outcome: Counter[tuple[str, str]] = field(default_factory=Counter)
    per_agent: dict[str, Rates] = field(default_factory=dict)
    per_service: dict[str, Rates] = field(default_factory=dict)
    responded: int = 0  # explicit responses (the median's population)
    median_response_seconds: float | None = None
    defaulted: int = 0
    recent_defaults: list[Action] = field(default_factory=list)


def counts_text(counter: Mapping[str, int], name: Callable[[str], str] = str) -> str:
    """'approve 6, acknowledge 3': largest first, ties by name; `name` writes each key (Slack
    escapes mrkdwn, the CLI prints it as it is)."""
    ranked = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name(k)} {v}" for k, v in ranked) or "none"
