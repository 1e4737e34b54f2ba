"""The running application's parts, built once by the app factory and passed around."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bot.clock import Clock, system_clock
from bot.config import Settings
from bot.policy.rules import Policy
from storage.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    policy: Policy
    clock: Clock = system_clock
    slack: Any = None  # slack_sdk AsyncWebClient (None in CLI contexts without Slack)
    extras: dict[str, Any] = field(default_factory=dict)
