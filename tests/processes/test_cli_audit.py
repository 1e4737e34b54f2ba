"""`countersign audit ...` run as a user runs it: the installed CLI in a subprocess, DATABASE_URL set,
against the database a real running app has written."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.demo.fakeslack import FakeSlack
from bot.reports import audit
from storage.ledger.verify import format_anchor, parse_anchor
from tests.conftest import Running
from tests.integration.test_ledger import traffic
from tests.policies import FAST

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [shutil.which("countersign")] if shutil.which("countersign") else [sys.executable, "-m", "bot.cli"]


async def cli(running: Running, tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    """Run `countersign ARGS` in an empty directory (no .env) against the running app's database."""
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *args, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": running.svc.settings.database_url, **env})
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def tamper_row(running: Running, seq: int) -> None:
    """Someone with database access drops the guard and edits one row, as with sqlite3 or psql."""
    async with running.svc.db.session() as session:
        if running.svc.db.dialect == "postgresql":
            await session.execute(text("DROP TRIGGER ledger_append_only ON ledger"))
        else:
            await session.execute(text("DROP TRIGGER ledger_no_update"))
        await session.execute(text(f"UPDATE ledger SET actor = 'U0SCAPEGOAT' WHERE seq = {seq}"))
        await session.commit()


async def test_verify_head_and_export_after_real_traffic(running: Running, fake_slack: FakeSlack,
                                                         tmp_path: Path) -> None:
    await traffic(running, fake_slack)
    head_seq, head_hash = await audit.current_head(running.svc.db)
    anchor = format_anchor(head_seq, head_hash)

    code, out, err = await cli(running, tmp_path, "audit", "verify")
    assert code == 0, err
    assert out.strip() == f"ledger intact: {head_seq} entries, head {anchor}"
    code, out, _ = await cli(running, tmp_path, "audit", "head")
    assert (code, out.strip()) == (0, anchor)

    code, _, err = await cli(running, tmp_path, "audit", "export", "--format", "csv",
                             "--output", "ledger.csv")
    assert code == 0 and f"{head_seq} entries written" in err
    assert "\r" not in err.replace("\r\n", "\n") and "%" not in err  # no progress bar when not on a terminal
    with (tmp_path / "ledger.csv").open(newline="", encoding="utf-8") as f:
        exported = audit.read_export(f, "csv")
    assert [e["seq"] for e in exported] == list(range(1, head_seq + 1))
    assert all(audit.entry_checks_out(e) for e in exported) and exported[-1]["hash"] == head_hash

    code, out, _ = await cli(running, tmp_path, "audit", "export", "--format", "jsonl", "--service", "search")
    lines = audit.read_export(io.StringIO(out), "jsonl")
    assert code == 0 and lines and {e["service"] for e in lines} == {"search"}
    assert all(audit.entry_checks_out(e) for e in lines)
    code, _, err = await cli(running, tmp_path, "audit", "export", "--format", "xml")
    assert code != 0 and "jsonl" in err


async def test_an_edited_row_fails_verify_naming_it(running: Running, fake_slack: FakeSlack,
                                                    tmp_path: Path) -> None:
    await traffic(running, fake_slack)
    before = format_anchor(*await audit.current_head(running.svc.db))
    await tamper_row(running, 3)

    code, out, err = await cli(running, tmp_path, "audit", "verify")
    assert code == 1, out
    assert "LEDGER TAMPERED: entry 3: changed" in err and "verified intact up to entry 2" in err
    code, out, _ = await cli(running, tmp_path, "audit", "verify", "--json", "--against", before)
    result = json.loads(out)
    assert code == 1 and result["ok"] is False and result["problem"]["seq"] == 3
    code, _, err = await cli(running, tmp_path, "audit", "verify", "--against", "not-an-anchor")
    assert code == 2 and "HASH@SEQ" in err


async def test_anchor_is_posted_to_leadership_and_verified_against(running: Running, fake_slack: FakeSlack,
                                                                   tmp_path: Path) -> None:
    await traffic(running, fake_slack)
    policy_file = tmp_path / "policy.yml"
    policy_file.write_text(FAST)
    code, out, err = await cli(running, tmp_path, "audit", "anchor", "--wait", "20",
                               COUNTERSIGN_POLICY=str(policy_file))
    assert code == 0 and "posted to C0LEADERS" in err, err
    anchor = out.strip()
    seq, hash_ = parse_anchor(anchor)
    posted = [c for c in fake_slack.posts("C0LEADERS") if anchor in c.args.get("text", "")]
    assert len(posted) == 1 and anchor in json.dumps(posted[0].args.get("blocks"))

    code, out, err = await cli(running, tmp_path, "audit", "verify", "--against", anchor)
    assert code == 0 and "matches 1 anchor" in out, err
    forged = format_anchor(seq, "f" * 64 if hash_ != "f" * 64 else "e" * 64)
    code, _, err = await cli(running, tmp_path, "audit", "verify", "--against", forged)
    assert code == 1 and f"entry {seq}: anchor" in err
    beyond = format_anchor(seq + 1000, hash_)
    code, _, err = await cli(running, tmp_path, "audit", "verify", "--against", beyond)
    assert code == 1 and "removed" in err


@pytest.mark.parametrize("which", ["proposal", "autonomous"])
async def test_responsibility_record_is_the_same_in_api_and_cli(running: Running, fake_slack: FakeSlack,
                                                               tmp_path: Path, which: str) -> None:
    ids = await traffic(running, fake_slack)
    action_id = ids[which]
    status, api = await running.get(f"/v1/actions/{action_id}")
    assert status == 200 and api["decision"] is not None
    code, out, err = await cli(running, tmp_path, "actions", "show", str(action_id), "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["decision"] == api["decision"]
    duty = record["responsibility"]
    decision = api["decision"]
    assert duty["accountable"] == decision["by"]
    for key in ("accountability", "level", "via", "at", "reason", "outcome"):
        assert duty[key] == decision[key], key
    assert duty["accountability"] == ("explicit" if which == "proposal" else "policy")
    assert duty["ai"]["rationale"] == api["rationale"] and duty["ai"]["confidence"] == api["confidence"]
    assert duty["ai"]["evidence"] == api["evidence"] and duty["ledger"]["entries"] >= 2
    code, out, _ = await cli(running, tmp_path, "actions", "show", str(action_id))
    assert code == 0 and "ACCOUNTABLE:" in out and "ledger:" in out
    assert ("not escalated" in out) == (which == "autonomous") and "None" not in out
    if which == "proposal":  # whom each page went to (the entry's actor is countersign: was a bare line)
        assert "escalation.page (level owner, target U0OWNER)" in out, out
