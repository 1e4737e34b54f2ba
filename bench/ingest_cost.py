"""The group-commit writer's cost per submission, without HTTP: prepare + `Writer.write_batch`.

    python -m bench.ingest_cost --database postgresql [--batch 32] [--batches 200] [--keys]
    python -m bench.ingest_cost --database postgresql --instructions [--keys] [--no-ledger]

The first form prints CPU time per submission (this machine's load moves it by ±20 %). The second
counts instructions with valgrind (cachegrind), which the load does not move: the same command
twice agrees within 0.01 %. It runs this script under valgrind with 2 and with 12 batches and
divides the difference by the submissions of the 10 extra batches, so start-up and warm-up cancel
out. `PYTHONHASHSEED=0` keeps dict and set layouts the same from run to run. Needs valgrind, and
PostgreSQL at COUNTERSIGN_TEST_PG for `--database postgresql` (the database server's work is not
counted: only this process's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import asyncpg

from bench.bench_ingest import BODY, PG_ADMIN


async def measure(database: str, batch: int, batches: int, keys: bool, ledger_on: bool = True) -> None:
    from bot.actions.submit import prepare
    from bot.actions.tokens import TokenCache
    from bot.actions.writer import Writer
    from bot.app import build_services
    from bot.contract.schemas import ActionIn
    from storage.queries import agents
    from tests.conftest import make_settings
    from tests.conftest import test_policy as fast_policy

    if not ledger_on:  # as the benchmark's ledger-off server (bench.bench_ingest): `append` a no-op
        from storage.ledger import chain

        async def no_append(*_: object, **__: object) -> None:
            return None

        chain.append = no_append  # type: ignore[assignment]
    name = f"cs_cost_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        if database == "sqlite":
            url = f"sqlite+aiosqlite:///{tmp}/cost.db"
        else:
            admin = await asyncpg.connect(PG_ADMIN)
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
            url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
        svc = build_services(make_settings(url, "http://127.0.0.1:9/"), policy=fast_policy())
        try:
            await svc.db.migrate()
            async with svc.db.session() as session:
                agent, _ = await agents.create(session, "cost")
                await session.commit()
            writer = Writer(svc, TokenCache(svc))

            def preps(n: int) -> list:  # type: ignore[type-arg]
                return [prepare(svc, agent, ActionIn.model_validate(BODY, context={"now": svc.clock()}), raw=BODY,
                                idempotency_key=uuid.uuid4().hex if keys else None) for _ in range(n)]

            for rounds in (2, batches):  # warm-up, then the measured batches
                work = [preps(batch) for _ in range(rounds)]
                cpu, wall = time.process_time(), time.perf_counter()
                for one in work:
                    answers = await writer.write_batch(one)
                    assert all(isinstance(a, tuple) and a[0] == 201 for a in answers), answers[:1]
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            n = batch * batches
            label = database + (" keyed" if keys else "") + ("" if ledger_on else ", ledger off")
            print(f"{label}, batches of {batch}: CPU {1e6 * cpu / n:.0f} µs "
                  f"a submission (wall {1e6 * wall / n:.0f} µs)")
        finally:
            await svc.db.dispose()
            if database != "sqlite":
                admin = await asyncpg.connect(PG_ADMIN)
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                await admin.close()


def instructions(database: str, batch: int, keys: bool, ledger_on: bool = True) -> None:
    def count(batches: int) -> int:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                   sys.executable, "-m", "bench.ingest_cost", "--database", database, "--batch", str(batch),
                   "--batches", str(batches)] + (["--keys"] if keys else []) + ([] if ledger_on else ["--no-ledger"])
        out = subprocess.run(command, capture_output=True, text=True, check=True,
                             env={**os.environ, "PYTHONHASHSEED": "0"}).stderr
        found = re.search(r"I\s+refs:\s+([\d,]+)", out)
        assert found, out[-2000:]
        return int(found.group(1).replace(",", ""))

    extra = count(12) - count(2)
    print(f"{database}{' keyed' if keys else ''}{'' if ledger_on else ', ledger off'}, batches of {batch}: "
          f"{extra // (10 * batch):,} instructions a submission (prepare + write_batch)")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--keys", action="store_true", help="an Idempotency-Key on every submission")
    parser.add_argument("--no-ledger", action="store_true", help="ledger.append a no-op (its share)")
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind")
    args = parser.parse_args()
    if args.instructions:
        instructions(args.database, args.batch, args.keys, not args.no_ledger)
    else:
        asyncio.run(measure(args.database, args.batch, args.batches, args.keys, not args.no_ledger))


if __name__ == "__main__":
    cli()
