"""CPU time per request of a benchmark's processes, read from /proc (Linux).

On a two-core machine where the server, the database and the load generator share the cores,
throughput follows the CPU every request costs all of them; CPU time per request moves far less
with other work on the machine than throughput does (bench.bench_ingest prints both).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _seconds(pid: int | str) -> float:
    """utime + stime of one process; 0 if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres_pids() -> list[str]:
    """Every PostgreSQL process on the machine (postmaster, backends, WAL writer, ...): the cluster is
    shared, so another session's queries would count too; the benchmarks run on a quiet machine."""
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/comm") as comm:
                    if comm.read().strip() == "postgres":
                        pids.append(pid)
            except OSError:
                continue
    return pids


@dataclass(frozen=True)
class CpuUse:
    """Microseconds of CPU per request."""

    server: float
    database: float | None  # PostgreSQL's processes; None on SQLite (it runs inside the server)
    load: float  # the load generator (this process)

    @property
    def total(self) -> float:
        return self.server + (self.database or 0.0) + self.load


class CpuMeter:
    """Started before a load, read after it: `per_request(n)`."""

    def __init__(self, server_pids: list[int], *, postgres: bool) -> None:
        self.server_pids, self.postgres = server_pids, postgres
        self._start = self._now()

    def _now(self) -> tuple[float, float, float]:
        server = sum(_seconds(pid) for pid in self.server_pids)
        database = sum(_seconds(pid) for pid in _postgres_pids()) if self.postgres else 0.0
        own = os.times()
        return server, database, own.user + own.system

    def per_request(self, requests: int) -> CpuUse:
        end = self._now()
        server, database, load = (1e6 * (b - a) / requests for a, b in zip(self._start, end, strict=True))
        return CpuUse(server, database if self.postgres else None, load)
