"""Where the ingest server's time goes: py-spy on the countersign bench server under load.

    python -m bench.profile_ingest [--database postgresql] [--n 30000] [--out ingest-profile.txt]

Starts the server bench.bench_ingest measures, warms it with 300 submissions, records it with
`py-spy record -r 400 -f raw` while 32 clients submit `--n` actions, and sums the samples by part
(the first part whose frame is in a sample's stack). py-spy sees the writer's SQLAlchemy greenlets
as separate stacks: their frames still name the part. Needs py-spy (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import tempfile
from pathlib import Path

from bench.bench_ingest import Server, load

# (part, frames that mark it), first match wins: the ledger and the statements before the commit
# that contains them, the writer's own bookkeeping last.
PARTS: list[tuple[str, list[str]]] = [
    ("the ledger (canonical text at append; the chain statement at commit)",
     ["_append_pending", "append (storage/ledger/chain.py", "write_postgresql", "ledger_form"]),
    ("the actions INSERT (values, column arrays)", ["insert_actions"]),
    ("first steps (planning ahead, their INSERT)", ["first_steps"]),
    ("`paging.advance` (step record, card, App Home rows)", ["advance (bot/escalation"]),
    ("the batch's first statement (revocation stamp, held keys)", ["batch_start"]),
    ("COMMIT and the session's flush (the outbox rows)", ["AsyncSession.commit", "Session.commit"]),
    ("the 201 body (`action_json`)", ["answer (bot/actions/submit.py", "action_json"]),
    ("`prepare` (policy match, grants and pauses, the snapshot)", ["prepare (bot/actions/submit.py"]),
    ("HTTP: aiohttp, auth, pydantic validation, JSON", ["RequestHandler", "post_action", "auth_middleware",
                                                        "StreamWriter", "_handle (aiohttp", "web_protocol"]),
    ("the rest of the writer (build_action, ORM bookkeeping, results)",
     ["Writer.", "forget_settled", "build_action", "sqlalchemy", "asyncpg"]),
]
IDLE = "_worker (concurrent/futures/thread.py"  # executor threads waiting for work


def parts(raw: Path) -> tuple[list[tuple[str, float]], int]:
    """(part, share of the busy samples) from py-spy's raw (collapsed) output; and the sample count."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if IDLE in stack:
            continue
        name = next((part for part, frames in PARTS if any(f in stack for f in frames)),
                    "the event loop, sockets, GC (no Python frame of ours)")
        counts[name] += int(n)
    total = sum(counts.values())
    return [(name, 100 * c / total) for name, c in counts.most_common()], total


async def record(database: str, n: int, out: Path) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        async with Server("countersign", database, tmp) as server:
            await load(server.url, server.token, 300, 32, False)
            spy = await asyncio.create_subprocess_exec(
                "py-spy", "record", "-r", "400", "-f", "raw", "-o", str(out), "--pid", str(server.procs[0].pid),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.5)  # py-spy attaches
            figures = await load(server.url, server.token, n, 32, False)
            spy.send_signal(2)
            await asyncio.wait_for(spy.wait(), 60)
    return f"{figures.rate:.0f}/s, p99 {figures.p99:.1f} ms under py-spy"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--out", type=Path, default=Path("ingest-profile.txt"))
    args = parser.parse_args()
    print(asyncio.run(record(args.database, args.n, args.out)))
    shares, total = parts(args.out)
    print(f"{total} busy samples\n\n| part | share |\n|---|---:|")
    for name, share in shares:
        print(f"| {name} | {share:.1f} % |")


if __name__ == "__main__":
    cli()
