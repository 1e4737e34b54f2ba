"""Pacing Slack calls so Countersign never earns a 429 (`Pacer`, a per-channel token bucket), and a
breaker so it never hammers a dead Slack (`Breaker`). Details: docs/architecture.md, "Pacing"."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.errors import SlackApiError

from storage import outbox

# Slack: "chat.postMessage ... generally allows an app to post 1 message per second to a specific
# channel, with short bursts over 1 allowed". A burst of 3 keeps a margin for timing jitter.
POST_RATE_PER_SECOND = 1.0
POST_BURST = 3
# A send is counted when its row is claimed. If it leaves for Slack later than this (a loaded
# machine, a slow lookup or history check first), it arrives together with the sends other
# replicas were allowed meanwhile: it takes a fresh token as it leaves. The margin is Slack's
# burst (about 5) over ours (3): arrivals in any window stay within ours plus this.
TOKEN_TTL = 1.0

Monotonic = Callable[[], float]


class Pacer:
    def __init__(self, rate: float = POST_RATE_PER_SECOND, burst: int = POST_BURST,
                 clock: Monotonic = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (burst - 1) * self.interval
        self.clock = clock
        self._sent_tat: dict[str, float] = {}  # key -> theoretical arrival time of the next *send*
        self._queue_tail: dict[str, float] = {}  # key -> the latest time a waiting message was given

    def acquire(self, key: str, waiting: int | None = None) -> float:
        """0.0: send now (the send is counted). Otherwise the seconds after which to come back: a
        time of its own, one interval after the previous waiting message, so a backlog returns
        at the pace it can be sent (one row write per message, no polling).

        `waiting`: how many posts wait for `key` now (this one included). A slot given out is
        never handed back when its post leaves early in a pack, or is skipped, so under sustained
        load the tail ran minutes ahead of the real queue (a 10-minute soak's last posts waited
        214 s behind an empty queue); no slot is given further out than the queue is long."""
        now = self.clock()
        tat = max(self._sent_tat.get(key, now), now)
        allowed_at = tat - self.tolerance
        if allowed_at <= now + 1e-6:
            self._sent_tat[key] = tat + self.interval
            return 0.0
        slot = max(self._queue_tail.get(key, 0.0) + self.interval, allowed_at)
        if waiting is not None:
            slot = max(min(slot, now + waiting * self.interval), allowed_at)
        self._queue_tail[key] = slot
        return slot - now

    def wait(self, key: str) -> float:
        """Seconds until a send on `key` would be allowed (0: now); takes nothing."""
        now = self.clock()
        return max(0.0, max(self._sent_tat.get(key, now), now) - self.tolerance - now)

    def take(self, key: str) -> None:
        """Count a send on `key` that `wait` allowed."""
        now = self.clock()
        self._sent_tat[key] = max(self._sent_tat.get(key, now), now) + self.interval

    def block(self, key: str, seconds: float) -> None:
        """Slack answered 429 with Retry-After: nothing goes on `key` before it has passed."""
        until = self.clock() + seconds
        self._sent_tat[key] = max(self._sent_tat.get(key, 0.0), until + self.tolerance)

    def state(self, key: str) -> tuple[float, float]:
        """The bucket of `key` as (tat, queue tail), 0.0 for unknown: what the database keeps."""
        return self._sent_tat.get(key, 0.0), self._queue_tail.get(key, 0.0)

    def restore(self, key: str, tat: float, queue_tail: float) -> None:
        """Take the bucket of `key` as stored (another replica may have sent since)."""
        for table, value in ((self._sent_tat, tat), (self._queue_tail, queue_tail)):
            if value:
                table[key] = value
            else:
                table.pop(key, None)

    def prune(self, older_than: float = 600.0) -> None:
        """Drop state for keys idle for a while (bounded memory over months of channels)."""
        cutoff = self.clock() - older_than
        for key in [k for k, tat in self._sent_tat.items() if tat < cutoff]:
            del self._sent_tat[key]
            if self._queue_tail.get(key, 0.0) < cutoff:
                self._queue_tail.pop(key, None)


def fresh_token_needed(granted: tuple[str, float] | None, channel: str, now: float,
                       ttl: float = TOKEN_TTL) -> bool:
    """Whether a post leaving now for `channel` needs a fresh token: the one its row was claimed
    with (key, when) was counted under another key (an e-mail, resolved to a user id only when
    sent), is too old (the send left late), or there was none."""
    if granted is None:
        return True
    key, at = granted
    return key != channel or now - at > ttl


@dataclass
class Breaker:
    """Open after `threshold` consecutive transient Slack failures; probe at a capped backoff."""

    threshold: int = 3
    max_probe_interval: float = 5.0
    clock: Monotonic = time.monotonic
    failures: int = 0
    open_until: float = 0.0
    opened_at: float | None = None  # monotonic time the current outage was noticed
    last_error: str = ""
    _wall_opened: float | None = field(default=None, repr=False)

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def allows_sending(self) -> bool:
        return not self.is_open

    def probe_due(self) -> bool:
        return self.is_open and self.clock() >= self.open_until

    def failure(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.failures >= self.threshold:
            if self.opened_at is None:
                self.opened_at, self._wall_opened = self.clock(), time.time()
            wait = min(self.max_probe_interval, 2.0 ** (self.failures - self.threshold))
            self.open_until = self.clock() + wait

    def success(self) -> bool:
        """Slack answered; returns True if this closed an open breaker (time to wake the backlog)."""
        was_open = self.is_open
        self.failures, self.opened_at, self._wall_opened, self.open_until = 0, None, None, 0.0
        return was_open

    def restore(self, failures: int, open_until: float, opened_at: float | None, last_error: str) -> None:
        """Take the state as stored (shared_budget: another replica may have seen failures); only
        for a breaker whose clock is wall time."""
        self.failures, self.open_until, self.last_error = failures, open_until, last_error
        self.opened_at = self._wall_opened = opened_at

    def describe(self) -> str:
        if not self.is_open:
            return "ok"
        since = time.strftime("%H:%M:%SZ", time.gmtime(self._wall_opened or time.time()))
        return f"Slack failing since {since} ({self.failures} failures): {self.last_error}"


# --- what /healthz and /metrics say about deliveries ---------------------------------------------

OLD_BACKLOG_SECONDS = 120.0  # /healthz says degraded when a Slack message waits longer than this


async def delivery_health(svc: Any, breaker: Breaker) -> str:
    """For /healthz: "ok", or why deliveries are degraded (Slack failing, Slack backlog too old)."""
    if breaker.is_open:
        return breaker.describe()
    async with svc.db.session() as session:
        waiting, oldest = await outbox.backlog(session, target="slack")
    age = (svc.clock() - oldest).total_seconds() if oldest else 0.0
    if age > OLD_BACKLOG_SECONDS:
        return f"{waiting} Slack messages waiting, the oldest for {age:.0f}s"
    return "ok"


async def refresh_backlog_metrics(svc: Any) -> None:
    """For /metrics: the backlog's size, its oldest message's age, and the deliveries that failed
    for good (`countersign deliveries list --failed`), read when scraped."""
    metrics = svc.metrics
    async with svc.db.session() as session:
        waiting, oldest = await outbox.backlog(session)
        failed = await outbox.count_failed(session)
    metrics.outbox_backlog.set(waiting)
    metrics.outbox_failed.set(failed)
    metrics.outbox_oldest_age.set((svc.clock() - oldest).total_seconds() if oldest else 0.0)


# --- retries ---------------------------------------------------------------------------------------


def backoff(attempt: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter (AWS architecture blog), in seconds."""
    return random.uniform(base / 2, min(cap, base * 2 ** max(0, attempt - 1)))


def retry_after(resp: Any) -> float:
    try:
        return max(1.0, float(resp.headers.get("Retry-After", 1)))
    except (TypeError, ValueError, AttributeError):
        return 1.0


def slack_error(resp: Any) -> str:
    """Slack's `error` code from an answer (which may not even be JSON during an outage)."""
    data = getattr(resp, "data", None)
    return str(data.get("error") or "unknown") if isinstance(data, dict) else "no answer"


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, SlackApiError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}: {slack_error(exc.response)}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
