"""Revision 0001 is frozen: databases in the field were created by it, so a schema change is a new
Alembic revision (`python -m storage.migrations.autogen "what changed"`), never an edit of an old one."""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS = Path(__file__).resolve().parents[2] / "storage" / "migrations"
FROZEN = {
    "0001_initial_schema.py": "79c04a571b7122f9901527d27fa1bf5a66a49d0c7c36e21cdbd2b9e473c7d7f6",
}


def test_released_revisions_are_never_edited() -> None:
    for name, digest in FROZEN.items():
        actual = hashlib.sha256((MIGRATIONS / "versions" / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} was edited: add a new revision instead (storage/migrations/autogen.py)"


def test_revisions_form_one_line() -> None:
    """One head, each revision on top of the previous one: replicas and `migrate` agree on 'head'."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    assert len(script.get_heads()) == 1, f"several heads: {script.get_heads()} (merge or re-chain them)"
    revisions = list(script.walk_revisions())
    assert revisions[-1].revision == "0001" and revisions[-1].down_revision is None
