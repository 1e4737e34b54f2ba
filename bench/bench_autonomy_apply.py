"""What grants and pauses add to each submission, measured where it happens: `apply` (the rule, then a
grant, then a pause) against the same submission with nothing in force, in one process, side by side.

    python -m bench.bench_autonomy_apply [--grants 20] [--pauses 3] [--n 200000]

The side-by-side ingest comparison in bench_trust.py measures the same thing through the whole
submit path, where it is lost in the machine's noise (runs scatter by ±10 % at a few thousand
submissions a side); this one isolates it, and relates it to a submission's CPU measured in
bench/results/bench_ingest.md (~2.5 ms). Writes bench/results/bench_autonomy_apply.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import timeit
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.policy.autonomy import GrantInForce, InForce, PauseInForce, apply
from bot.policy.rules import RuleMatch

RESULTS = Path(__file__).parent / "results" / "bench_autonomy_apply.md"
SUBMISSION_CPU_US = 2500.0  # bench_ingest.md's profile: ~2.5 ms of server CPU per submission


def in_force(grants: int, pauses: int, now: datetime) -> InForce:
    """Grants for other agents' keys and pauses of other services: every one is looked at, none applies."""
    until = now + timedelta(days=30)
    return InForce(
        grants=tuple(GrantInForce(i, "other", f"svc{i:03d}", "scale_down", "production", "promote",
                                  "acknowledge", "U0VP", until) for i in range(grants)),
        pauses=tuple(PauseInForce(i, f"svc9{i:02d}", f"svc9{i:02d}", None, "U0VP", "bench", None)
                     for i in range(pauses)),
    )


def per_call_us(fn: object, n: int) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=20)
    parser.add_argument("--pauses", type=int, default=3)
    parser.add_argument("--n", type=int, default=200_000)
    args = parser.parse_args()
    now = datetime.now(UTC)
    match = RuleMatch(index=1, mode="approve", rule={"mode": "approve", "match": {"tier": "t1"}})
    loaded, empty = in_force(args.grants, args.pauses, now), InForce()

    def call(state: InForce) -> object:
        return lambda: apply(match, state, agent="bench", service="svc005", action_type="scale_down",
                             environment="staging", now=now)

    with_us, without_us = per_call_us(call(loaded), args.n), per_call_us(call(empty), args.n)
    added = with_us - without_us
    share = added / SUBMISSION_CPU_US * 100
    lines = [
        "# Grants and pauses at ingest: the cost of `apply` per submission",
        "",
        f"Command: `python -m bench.bench_autonomy_apply --grants {args.grants} --pauses {args.pauses} "
        f"--n {args.n}`  ",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f}; best of 5 × {args.n:,} calls.",
        "",
        "| in force | µs per submission |",
        "|---|---:|",
        f"| {args.grants} grants, {args.pauses} pauses (none for this submission) | {with_us:.2f} |",
        f"| nothing | {without_us:.2f} |",
        f"| **added** | **{added:.2f}** |",
        "",
        f"Added cost: {added:.1f} µs against ~{SUBMISSION_CPU_US / 1000:.1f} ms of CPU per submission "
        f"(bench_ingest.md) = **{share:.2f} %** (target: under 5 %). The state itself is read from the "
        "database at most once a second per process (bot/autonomy/state.py: two small indexed reads).",
    ]
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
