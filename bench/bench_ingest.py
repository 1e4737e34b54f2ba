"""Ingest benchmark: `POST /v1/actions` against a RAW-DRIVER baseline, on SQLite and PostgreSQL.

    python -m bench.bench_ingest [--n 2000] [--rounds 2] [--databases sqlite,postgresql] [--workers 1,2]

The raw baseline is aiohttp + aiosqlite / asyncpg: parse the JSON, one INSERT and one commit per
request, answer 201. Countersign does everything a real submission does (cached bearer token,
validation, policy, the frozen chain, the action, its ledger entries, the first page in the
outbox, the escalation step), group-committed (bot.actions.writer). Each server runs in its own
process (`--serve`); the load generator in this one. Scenarios: 32 and 256 concurrent clients,
32 with an Idempotency-Key on every request, and 32 with the ledger switched off (benchmark only).
Rounds interleave (raw, ours, raw, ours) so that other work on the machine falls on both sides;
each ratio is ours / raw of the same round. Background workers are off (no Slack here). Each
load also reports the CPU every request cost the server, PostgreSQL and the load generator
(bench.cpu_use): steadier than throughput on a shared machine, and it says where a cost lands.
Results: bench/results/bench_ingest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

from bench.cpu_use import CpuMeter, CpuUse
from bench.ingest_servers import serve_countersign, serve_raw

PG_ADMIN = os.environ.get("COUNTERSIGN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results" / "bench_ingest.md"
BODY = {
    "kind": "proposed",
    "service": "checkout-api",
    "action_type": "scale_down",
    "summary": "Scale checkout-api from 12 to 8 pods",
    "rationale": "CPU under 20% for 3 hours; saving cost",
    "confidence": 0.82,
    "evidence": [{"label": "CPU dashboard", "url": "https://grafana.example.com/d/cpu"}],
}


# --- the load generator ------------------------------------------------------------------------


@dataclass
class Figures:
    rate: float
    p50: float
    p99: float
    errors: int
    cpu: CpuUse | None = None  # per request, set by `measured`


WARM_UP = 50  # requests before the clock starts


def cpu_text(cpu: CpuUse | None) -> str:
    if cpu is None:
        return "?"
    database = "" if cpu.database is None else f" + db {cpu.database:.0f}"
    return f"server {cpu.server:.0f}{database} + load {cpu.load:.0f}"


def median_cpu(figures: list[Figures]) -> CpuUse:
    """Field by field, the median of the rounds' CPU per request."""
    uses = [f.cpu for f in figures if f.cpu is not None]
    database = [u.database for u in uses if u.database is not None]
    return CpuUse(statistics.median(u.server for u in uses), statistics.median(database) if database else None,
                  statistics.median(u.load for u in uses))


async def measured(server: Server, n: int, concurrency: int, keys: bool) -> Figures:
    """`load` with the CPU it cost each process, per request (warm-up included in both counts)."""
    meter = CpuMeter([p.pid for p in server.procs], postgres=server.kind == "postgresql")
    figures = await load(server.url, server.token, n, concurrency, keys)
    figures.cpu = meter.per_request(n + WARM_UP)
    return figures


async def load(url: str, token: str, n: int, concurrency: int, keys: bool) -> Figures:
    latencies: list[float] = []
    errors = 0
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    body = json.dumps(BODY).encode()
    remaining = iter(range(n))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def post() -> int:
            extra = {"Idempotency-Key": uuid.uuid4().hex} if keys else {}
            async with http.post(f"{url}/v1/actions", data=body, headers={**headers, **extra}) as resp:
                await resp.read()
                return resp.status

        async def worker() -> None:
            nonlocal errors
            for _ in remaining:
                started = time.perf_counter()
                if await post() != 201:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        for _ in range(WARM_UP):
            await post()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    latencies.sort()
    return Figures(n / wall, statistics.median(latencies) * 1000,
                   latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, errors)


async def fresh_database(kind: str, tmp: str) -> tuple[str, str | None]:
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp}/bench-{uuid.uuid4().hex[:6]}.db", None
    name = f"cs_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}", name


async def drop_database(name: str) -> None:
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`which` ("raw", "countersign", "countersign-noledger") in `workers` processes on one port."""

    def __init__(self, which: str, kind: str, tmp: str, workers: int = 1) -> None:
        self.which, self.kind, self.tmp, self.workers = which, kind, tmp, workers
        self.port = free_port()
        self.token_file = Path(tmp) / f"token-{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pg_name: str | None = None

    async def __aenter__(self) -> Server:
        url, self.pg_name = await fresh_database(self.kind, self.tmp)
        env = {**os.environ, "BENCH_TOKEN_FILE": str(self.token_file)}
        for w in range(self.workers):
            command = [sys.executable, "-m", "bench.bench_ingest", "--serve", self.which, "--url", url,
                       "--port", str(self.port)] + (["--reuse-port"] if self.workers > 1 else [])
            self.procs.append(subprocess.Popen(command, env=env))  # noqa: ASYNC220  (a server, left running)
            if w == 0:
                await self._ready()
        await self._ready()
        return self

    async def _ready(self) -> None:
        async with aiohttp.ClientSession() as http:
            for _ in range(600):
                assert all(p.poll() is None for p in self.procs), f"the {self.which} server exited"
                try:
                    async with http.post(f"{self.url}/v1/actions", data=b"{}") as resp:
                        if resp.status and (self.which == "raw" or self.token_file.exists()):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)  # polling readiness
        await asyncio.sleep(0.3 * (len(self.procs) - 1))  # the other workers migrate and listen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return "none" if self.which == "raw" else self.token_file.read_text()

    async def __aexit__(self, *_: object) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)
        if self.pg_name:
            await drop_database(self.pg_name)


# (scenario name, server, concurrency, keys, workers)
Scenario = tuple[str, str, int, bool, int]


def scenarios(kind: str, workers: list[int]) -> list[Scenario]:
    out: list[Scenario] = [("32 concurrent", "countersign", 32, False, 1),
                           ("256 concurrent", "countersign", 256, False, 1),
                           ("32 concurrent, Idempotency-Key", "countersign", 32, True, 1),
                           ("32 concurrent, ledger off", "countersign-noledger", 32, False, 1)]
    if kind == "postgresql":
        out += [(f"32 concurrent, --workers {w}", "countersign", 32, False, w) for w in workers if w > 1]
    return out


async def measure(kind: str, args: argparse.Namespace, tmp: str, say: Callable[[str], None]
                  ) -> dict[str, list[tuple[Figures, Figures]]]:
    """Per scenario, (raw, ours) of each round; raw measured right before ours at the same concurrency."""
    found: dict[str, list[tuple[Figures, Figures]]] = {}
    for r in range(args.rounds):
        for name, which, conc, keys, workers in scenarios(kind, [int(w) for w in args.workers.split(",")]):
            async with Server("raw", kind, tmp) as raw_server:
                raw = await measured(raw_server, args.n, conc, False)
            async with Server(which, kind, tmp, workers) as ours_server:
                ours = await measured(ours_server, args.n, conc, keys)
            found.setdefault(name, []).append((raw, ours))
            say(f"{kind} round {r + 1} {name}: raw {raw.rate:.0f}/s p99 {raw.p99:.1f} ms | countersign "
                f"{ours.rate:.0f}/s p50 {ours.p50:.1f} ms p99 {ours.p99:.1f} ms errors {ours.errors} | "
                f"ratio {ours.rate / raw.rate:.2f} | CPU µs/request {cpu_text(ours.cpu)} (raw {cpu_text(raw.cpu)})")
    return found


async def main(args: argparse.Namespace) -> None:
    load_before = os.getloadavg()[0]
    table: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.databases.split(","):
            found = await measure(kind, args, tmp, lambda line: print(line, flush=True))
            keyless = statistics.median(o.rate for _, o in found["32 concurrent"])
            keyless_cpu = median_cpu([o for _, o in found["32 concurrent"]]).total
            for name, pairs in found.items():
                ratios = [o.rate / r.rate for r, o in pairs]
                ours = [o for _, o in pairs]
                extra = ""
                if "Idempotency-Key" in name or "ledger off" in name:
                    rel = statistics.median(o.rate for o in ours) / keyless
                    extra = (f"{rel:.2f} × keyless-with-ledger; CPU per request "
                             f"{median_cpu(ours).total / keyless_cpu:.2f} ×")
                line = (f"| {kind} | {name} | {statistics.median(r.rate for r, _ in pairs):.0f} | "
                        f"{statistics.median(o.rate for o in ours):.0f} | "
                        f"{' / '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(o.p50 for o in ours):.1f} | "
                        f"{max(o.p99 for o in ours):.1f} | {sum(o.errors for o in ours)} | "
                        f"{cpu_text(median_cpu(ours))} (raw {cpu_text(median_cpu([r for r, _ in pairs]))}) | {extra} |")
                print(line, flush=True)
                table.append(line)
    lines = [
        "# Ingest benchmark (`POST /v1/actions`, group commit)",
        "",
        f"Command: `python -m bench.bench_ingest --n {args.n} --rounds {args.rounds} --databases {args.databases} "
        f"--workers {args.workers}`  ",
        f"Machine: {os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}; "
        "server and load generator on the same machine, each server in its own process; "
        f"1-minute load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after "
        "(other engineers' test suites share the two cores).",
        "",
        f"{args.n} submissions per round (after 50 warm-up). Raw = aiohttp + aiosqlite/asyncpg, one INSERT "
        "and one commit per request, run right before each countersign round at the same concurrency. "
        "Ratio = countersign / raw throughput of the same round (one per round).",
        "",
        "CPU = microseconds of CPU per request (median of the rounds) of the server process(es), of "
        "PostgreSQL's processes and of the load generator, from /proc (bench.cpu_use).",
        "",
        "| database | scenario | raw /s | countersign /s | ratio per round | p50 ms | worst p99 ms | errors "
        "| CPU µs per request (raw) | vs keyless |",
        "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | --- | --- |",
        *table,
    ]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    previous = RESULTS.read_text().split("\n## Notes", 1) if RESULTS.exists() else ["", ""]
    notes = "\n## Notes" + previous[1] if len(previous) > 1 and previous[1] else ""
    RESULTS.write_text("\n".join(lines) + "\n" + notes)
    print(f"wrote {RESULTS}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--workers", default="1,2", help="PostgreSQL: also measure with these many processes")
    parser.add_argument("--serve", choices=["raw", "countersign", "countersign-noledger"])
    parser.add_argument("--url")
    parser.add_argument("--port", type=int)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    if args.serve:  # both servers on the loop `countersign serve` runs on (uvloop where installed)
        from bot.cli.main import event_loop

        server = (serve_raw(args.url, args.port) if args.serve == "raw"
                  else serve_countersign(args.url, args.port, args.serve == "countersign", args.reuse_port))
        event_loop().run_until_complete(server)
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
