"""manifest.yml and the code agree: every slash command, event, button action and modal callback the
handlers register is declared in the manifest, and the manifest declares nothing the code ignores."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_bolt.app.async_app import AsyncApp

import handlers
from bot.app import build_services
from tests.conftest import make_settings
from tests.conftest import test_policy as parse_test_policy

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
ENDPOINT = "/slack/events"  # the one route bot.app serves Slack on


class RecordingApp(AsyncApp):
    """A real bolt app that also notes every constraint a listener is registered with."""

    def __init__(self) -> None:
        super().__init__(signing_secret="s", token="xoxb-manifest-test")
        self.seen: dict[str, set[str]] = {k: set() for k in ("command", "event", "action", "view", "other")}

    def _note(self, kind: str, constraint: Any, key: str) -> None:
        if isinstance(constraint, dict):
            constraint = constraint.get(key) or constraint.get("type")
        if not isinstance(constraint, str):
            raise AssertionError(f"{kind} listener with a non-literal constraint {constraint!r}: "
                                 "the manifest test cannot check it")
        self.seen[kind].add(constraint)

    def command(self, command: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("command", command, "command")
        return super().command(command, *args, **kwargs)

    def event(self, event: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("event", event, "type")
        return super().event(event, *args, **kwargs)

    def action(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("action", constraints, "action_id")
        return super().action(constraints, *args, **kwargs)

    def block_action(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("action", constraints, "action_id")
        return super().block_action(constraints, *args, **kwargs)

    def view(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("view", constraints, "callback_id")
        return super().view(constraints, *args, **kwargs)

    def view_submission(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("view", constraints, "callback_id")
        return super().view_submission(constraints, *args, **kwargs)

    def shortcut(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("other", constraints, "callback_id")
        return super().shortcut(constraints, *args, **kwargs)

    def options(self, constraints: Any, *args: Any, **kwargs: Any) -> Any:
        self._note("other", constraints, "action_id")
        return super().options(constraints, *args, **kwargs)


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    return yaml.safe_load(MANIFEST.read_text())


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    db = tmp_path_factory.mktemp("manifest") / "m.db"
    svc = build_services(make_settings(f"sqlite+aiosqlite:///{db}", "http://127.0.0.1:9/api/"),
                         policy=parse_test_policy())
    app = RecordingApp()
    handlers.register(app, svc)
    return app.seen


def declared_interactions() -> dict[str, set[str]]:
    """The `# block_actions: a, b` and `# view_submission: c` lines under settings.interactivity
    (the manifest schema has no field for them, so they are comments Slack ignores)."""
    found: dict[str, set[str]] = {"action": set(), "view": set()}
    for kind, key in (("action", "block_actions"), ("view", "view_submission")):
        for line in re.findall(rf"^\s*#\s*{key}:\s*(.+)$", MANIFEST.read_text(), flags=re.M):
            found[kind] |= {name.strip() for name in line.split(",") if name.strip()}
    return found


def test_slash_commands_match(manifest: dict[str, Any], registered: dict[str, set[str]]) -> None:
    declared = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert declared == registered["command"]
    assert "/ai-actions" in declared


def test_events_match(manifest: dict[str, Any], registered: dict[str, set[str]]) -> None:
    assert set(manifest["settings"]["event_subscriptions"]["bot_events"]) == registered["event"]
    assert "app_home_opened" in registered["event"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_button_actions_and_modals_match(manifest: dict[str, Any], registered: dict[str, set[str]]) -> None:
    declared = declared_interactions()
    assert declared["action"] == registered["action"]
    assert declared["view"] == registered["view"]
    assert {"approve", "override", "acknowledge"} <= registered["action"]
    assert "override_modal" in registered["view"]
    assert registered["other"] == set()  # shortcuts / options would need manifest entries too
    assert manifest["settings"]["interactivity"]["is_enabled"] is True


def test_request_urls_point_at_the_slack_endpoint(manifest: dict[str, Any]) -> None:
    urls = [manifest["settings"]["event_subscriptions"]["request_url"],
            manifest["settings"]["interactivity"]["request_url"],
            *(c["url"] for c in manifest["features"]["slash_commands"])]
    assert all(u.startswith("https://") and u.endswith(ENDPOINT) for u in urls), urls


def test_scopes_cover_what_the_bot_calls(manifest: dict[str, Any]) -> None:
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    # chat.postMessage/update/postEphemeral, DMs, the slash command, users.lookupByEmail and users.info,
    # and conversations.history/replies (a post looked for before it is re-sent after a crash)
    needed = {"chat:write", "chat:write.public", "im:write", "commands", "users:read", "users:read.email",
              "channels:history", "groups:history", "im:history"}
    assert needed <= scopes
    assert manifest["settings"]["socket_mode_enabled"] is False  # HTTP mode by default; the switch is here
    assert manifest["display_information"]["name"]
