"""Settings: from the environment and a `.env` file; a missing or wrong setting is named at start.
Logs: one line per event with the action id, JSON when COUNTERSIGN_LOG_FORMAT=json."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest

from bot import logs
from bot.config import SettingsError, load_settings
from bot.demo.fakeslack import FakeSlack
from tests.processes.test_shutdown import serve_env, start_serve


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith(("SLACK_", "COUNTERSIGN_", "DATABASE_URL")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults(no_env: Path) -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///countersign.db" and settings.port == 3000
    assert settings.api_url == "https://slack.com/api/" and settings.log_format == "text"


def test_dotenv_file_and_environment(no_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (no_env / ".env").write_text(
        "COUNTERSIGN_PORT=4100\nDATABASE_URL=postgresql://u@db/cs\nSLACK_BOT_TOKEN=xoxb-1\n"
    )
    settings = load_settings()
    assert settings.port == 4100 and settings.database_url == "postgresql+asyncpg://u@db/cs"
    assert settings.slack_bot_token is not None and settings.slack_bot_token.get_secret_value() == "xoxb-1"
    monkeypatch.setenv("COUNTERSIGN_PORT", "4200")  # the environment wins over the file
    assert load_settings().port == 4200


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("COUNTERSIGN_PORT", "http", "COUNTERSIGN_PORT: Input should be a valid integer"),
        ("COUNTERSIGN_PORT", "70000", "COUNTERSIGN_PORT: Input should be less than or equal to 65535"),
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL: use sqlite+aiosqlite:///"),
        ("COUNTERSIGN_LOG_FORMAT", "xml", "COUNTERSIGN_LOG_FORMAT"),
        ("COUNTERSIGN_TICK_SECONDS", "0", "COUNTERSIGN_TICK_SECONDS"),
        # the HH:MM pattern let these through: serve then died with the scheduler's traceback
        ("COUNTERSIGN_DIGEST_TIME", "25:99", "COUNTERSIGN_DIGEST_TIME: a time of day as HH:MM, 00:00 to 23:59"),
        ("COUNTERSIGN_DIGEST_TIMEZONE", "Mars/Olympus", "COUNTERSIGN_DIGEST_TIMEZONE: an IANA time zone name"),
    ],
)
def test_a_wrong_setting_is_named(
    no_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(says)) as caught:
        load_settings()
    assert repr(value) in str(caught.value)


def test_secrets_are_never_echoed(no_env: Path) -> None:
    settings = load_settings(SLACK_BOT_TOKEN="xoxb-secret")
    assert "xoxb-secret" not in repr(settings)


@pytest.mark.parametrize(
    ("drop", "env", "says"),
    [
        ("SLACK_BOT_TOKEN", {}, "missing setting(s): SLACK_BOT_TOKEN"),
        ("SLACK_SIGNING_SECRET", {}, "missing setting(s): SLACK_SIGNING_SECRET"),
        ("COUNTERSIGN_POLICY", {}, "COUNTERSIGN_POLICY is not set"),
        (None, {"COUNTERSIGN_PORT": "http"}, "COUNTERSIGN_PORT: Input should be a valid integer"),
        (
            None,
            {"COUNTERSIGN_POLICY": "/nowhere/policy.yml"},
            "/nowhere/policy.yml: cannot read the policy file",
        ),
    ],
)
async def test_serve_names_the_missing_or_wrong_setting(
    fake_slack: FakeSlack, tmp_path: Path, drop: str | None, env: dict[str, str], says: str
) -> None:
    environment = serve_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", fake_slack.url, tmp_path)
    if drop:
        del environment[drop]
    environment.update(env)
    served = await start_serve(environment, tmp_path)
    assert await asyncio.to_thread(served.proc.wait, 60) == 2
    output = served.log_path.read_text()
    assert says in output and "Traceback" not in output, output


def _break_policy(policy: Path) -> str:
    text = policy.read_text().replace("remind_every: 1s", "remind_every: often")
    policy.write_text(text)
    return text


async def test_serve_with_a_bad_policy_gives_line_and_reason(fake_slack: FakeSlack, tmp_path: Path) -> None:
    environment = serve_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", fake_slack.url, tmp_path)
    policy = Path(environment["COUNTERSIGN_POLICY"])
    text = _break_policy(policy)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "remind_every: often" in row)
    served = await start_serve(environment, tmp_path)
    assert await asyncio.to_thread(served.proc.wait, 60) == 2
    output = served.log_path.read_text()
    assert f"{policy}:{line}: tiers.tier1.remind_every: bad duration 'often'" in output, output


def _log(fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    logs.configure(fmt, "INFO")
    try:
        logging.getLogger("countersign.test").info(
            "action %s approved by %s", 42, "U0OWNER", extra={"action_id": 42}
        )
        logging.getLogger("countersign.test").warning("no action here")
    finally:
        logging.getLogger().handlers.clear()
    return capsys.readouterr().err


def test_json_logs_one_object_per_line_with_the_action_id(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _log("json", capsys).splitlines()
    entry = json.loads(first)
    assert entry["action_id"] == 42 and entry["message"] == "action 42 approved by U0OWNER"
    assert (
        entry["level"] == "info" and entry["logger"] == "countersign.test" and entry["ts"].endswith("+00:00")
    )
    assert "action_id" not in json.loads(second)


def test_text_logs_one_line_per_event_with_the_action_id(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = _log("text", capsys).splitlines()
    assert first.endswith("action 42 approved by U0OWNER action_id=42") and "INFO" in first
    assert "action_id" not in second
