"""The installed `countersign` command given what people mistype: an empty agent name, a status
that does not exist. Each is refused in one plain line with a non-zero exit, never accepted
silently and never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.api.openapi import STATUSES
from tests.processes.test_cli import countersign


@pytest.mark.parametrize("name", ["", "   ", "\t"])
async def test_agents_add_refuses_an_empty_name(database_url: str, tmp_path: Path, name: str) -> None:
    added = await countersign("agents", "add", name, database_url=database_url, cwd=tmp_path)
    assert added.returncode == 2, added.stdout
    assert "an agent needs a name" in added.stderr and "Traceback" not in added.stderr
    assert "token:" not in added.stdout
    listed = await countersign("agents", "list", "--json", database_url=database_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [], "no nameless agent was created"


async def test_actions_list_refuses_an_unknown_status(database_url: str, tmp_path: Path) -> None:
    bogus = await countersign("actions", "list", "--status", "bogus", database_url=database_url, cwd=tmp_path)
    assert bogus.returncode == 2 and bogus.stdout == ""
    assert "'bogus' is not one of" in bogus.stderr and "Traceback" not in bogus.stderr
    for status in STATUSES:
        assert f"'{status}'" in bogus.stderr, status
    known = await countersign("actions", "list", "--status", "denied", database_url=database_url, cwd=tmp_path)
    assert known.returncode == 0 and "no actions" in known.stdout, known.stderr
