"""The pacing schedule and the Slack breaker, on a hand-moved clock (no sleeps)."""

from __future__ import annotations

from bot.delivery.pacing import Breaker, Pacer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_one_per_second_each_waiting_message_gets_its_own_time() -> None:
    clock = Clock()
    pacer = Pacer(rate=1.0, burst=3, clock=clock)
    waits = [pacer.acquire("C1") for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0]  # a burst of 3, then spread one second apart
    assert pacer.acquire("C2") == 0.0  # another channel is not held up
    clock.now += 1.0
    assert pacer.acquire("C1") == 0.0  # the first waiting message comes back and goes
    assert pacer.acquire("C1") == 3.0  # a newcomer queues behind the others still waiting


def test_slots_never_run_further_ahead_than_the_queue_is_long() -> None:
    """Posts given slots and then sent early in a pack (or skipped) never hand them back: a tail of
    such slots must not keep a newcomer waiting when the queue is short."""
    clock = Clock()
    pacer = Pacer(rate=1.0, burst=3, clock=clock)
    for _ in range(3):
        assert pacer.acquire("C1", waiting=1) == 0.0  # the burst
    waits = [pacer.acquire("C1", waiting=30 + n) for n in range(120)]  # a storm: each given a slot
    assert waits[:3] == [1.0, 2.0, 3.0] and waits[-1] == 120.0  # a long queue: a slot each, in turn
    clock.now += 1.0  # the storm left in packs meanwhile; one post now waits, alone
    assert pacer.acquire("C1", waiting=1) == 0.0  # a free token: no slot needed
    assert pacer.acquire("C1", waiting=1) == 1.0  # its turn, not the 119th second of a stale tail
    assert pacer.acquire("C1", waiting=2) == 2.0  # and the next one behind it


def simulate(pacer: Pacer, clock: Clock, messages: int, lag: float) -> list[float]:
    """The relay's loop: each message comes back when told (plus `lag`, a slow relay) until sent."""
    due = [(clock.now, m) for m in range(messages)]
    sent: list[float] = []
    while due:
        due.sort()
        at, msg = due.pop(0)
        clock.now = max(clock.now, at)
        wait = pacer.acquire("C1")
        if wait == 0.0:
            sent.append(clock.now)
        else:
            due.append((clock.now + wait + lag, msg))
    return sent


def test_rate_never_exceeds_the_limit_even_when_the_relay_runs_late() -> None:
    for lag in (0.0, 0.3, 2.5):
        clock = Clock()
        sent = simulate(Pacer(rate=1.0, burst=3, clock=clock), clock, 60, lag)
        assert len(sent) == 60
        for start in sent:  # never more than the rate plus the burst in any window
            assert len([t for t in sent if start <= t < start + 10.0]) <= 10 + 2, lag
    clock = Clock()
    sent = simulate(Pacer(rate=1.0, burst=3, clock=clock), clock, 60, 0.0)
    assert sent[-1] - sent[0] <= 60.0  # and on time when the relay is


def test_retry_after_blocks_the_channel() -> None:
    clock = Clock()
    pacer = Pacer(rate=1.0, burst=3, clock=clock)
    assert pacer.acquire("C1") == 0.0
    pacer.block("C1", 5.0)
    assert pacer.acquire("C1") >= 5.0
    clock.now += 5.0
    assert pacer.acquire("C1") == 0.0
    assert pacer.acquire("C2") == 0.0


def test_breaker_opens_after_repeated_failures_and_probes_with_capped_backoff() -> None:
    clock = Clock()
    breaker = Breaker(threshold=3, max_probe_interval=15.0, clock=clock)
    breaker.failure("HTTP 503")
    breaker.failure("HTTP 503")
    assert breaker.allows_sending()
    breaker.failure("HTTP 503")
    assert not breaker.allows_sending() and not breaker.probe_due()
    assert "HTTP 503" in breaker.describe()
    clock.now += 1.0
    assert breaker.probe_due()
    for _ in range(20):
        breaker.failure("refused")
    assert breaker.open_until - clock.now == 15.0  # capped
    assert breaker.success() is True and breaker.allows_sending() and breaker.describe() == "ok"
    assert breaker.success() is False


def test_wait_and_take_let_a_pack_use_one_send() -> None:
    clock = Clock()
    pacer = Pacer(rate=1.0, burst=3, clock=clock)
    for _ in range(3):
        assert pacer.wait("C1") == 0.0
        pacer.take("C1")
    assert pacer.wait("C1") == 1.0 and pacer.wait("C1") == 1.0  # asking takes nothing
    clock.now += 1.0
    assert pacer.wait("C1") == 0.0
