"""What reaches the Slack listeners: signed, well formed, and from our one workspace. A signed but
malformed request answers 400 (never a 500, never an exception inside a listener); a request from
another workspace or Enterprise Grid org is refused. Each is logged in one line. A slash command's
text is not judged here: whatever a person typed is answered by the command itself."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from slack_bolt.request.internals import extract_enterprise_id, extract_team_id
from slack_sdk.signature import SignatureVerifier

from bot.contract.schemas import MAX_BODY_BYTES

log = logging.getLogger("countersign.slack")

MAX_VALUE = 2000  # Slack's own limit on a button's value
MAX_DIGITS = 18  # an action id; more digits is not one (and int() refuses over 4,300)
LEARN_AGAIN_SECONDS = 60.0
LEARN_TIMEOUT = 3.0


class Malformed(ValueError):
    """A signed request that no listener can make sense of."""


@dataclass
class Workspace:
    """The one workspace (and Enterprise Grid org, if any) whose requests are accepted: SLACK_TEAM_ID,
    or what `auth.test` answers for the bot token."""

    team_id: str | None = None
    enterprise_id: str | None = None
    pinned: bool = False  # known (from the setting or auth.test); until then nothing is refused
    _tried_at: float = field(default=-LEARN_AGAIN_SECONDS)
    _refused_seen: set[tuple[str | None, str | None]] = field(default_factory=set)
    _learning: asyncio.Task[None] | None = None

    def learn_soon(self, slack: Any) -> None:
        """Not pinned yet (Slack was down at start): learn in the background, never on a request."""
        if not self.pinned and self._learning is None:
            self._learning = asyncio.create_task(self.learn(slack))
            self._learning.add_done_callback(lambda _: setattr(self, "_learning", None))

    async def learn(self, slack: Any) -> None:
        """Ask Slack which workspace the bot token belongs to (once; again a minute after a failure)."""
        if self.pinned or time.monotonic() - self._tried_at < LEARN_AGAIN_SECONDS:
            return
        self._tried_at = time.monotonic()
        try:
            async with asyncio.timeout(LEARN_TIMEOUT):
                answer = await slack.auth_test()
        except Exception as exc:  # Slack down or token bad: requests are still signed; learn later
            log.warning("could not learn the workspace from auth.test (%s); set SLACK_TEAM_ID to pin it", exc)
            return
        team = answer.get("team_id")
        if isinstance(team, str) and team:
            self.team_id, self.pinned = team, True
            self.enterprise_id = answer.get("enterprise_id") or None
            log.info("accepting Slack requests from workspace %s only", team)

    def refusal(self, team_id: str | None, enterprise_id: str | None) -> str | None:
        """Why a request from (team_id, enterprise_id) is refused, or None."""
        if not self.pinned:
            return None
        if team_id is not None and team_id != self.team_id:
            return f"team_id {team_id!r} is not this app's workspace"
        if enterprise_id is not None and enterprise_id != self.enterprise_id:
            return f"enterprise_id {enterprise_id!r} is not this app's organisation"
        return None

    def log_refused(self, team_id: str | None, enterprise_id: str | None, reason: str) -> None:
        """One warning per foreign workspace (a flood of them stays one line each, at debug)."""
        key = (team_id, enterprise_id)
        level = logging.DEBUG if key in self._refused_seen else logging.WARNING
        self._refused_seen.add(key)
        log.log(level, "refused a Slack request: %s", reason)


def verify(secret: str, raw: bytes, headers: Any) -> bool:
    try:
        return SignatureVerifier(secret).is_valid(
            raw.decode("utf-8", "replace"), headers.get("X-Slack-Request-Timestamp"), headers.get("X-Slack-Signature"))
    except ValueError:  # slack_sdk's int() of a timestamp that is not a whole number ("abc", "1e10")
        return False


def parse(raw: bytes, content_type: str) -> dict[str, Any]:
    """The request as the listeners will see it, checked for the shapes they rely on."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"body is not UTF-8 (byte {exc.start})") from None
    if content_type.startswith("application/json"):
        body = _json(text, "body")
    else:
        form = {k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()}
        body = _json(form["payload"], "payload") if "payload" in form else form
    if not isinstance(body, dict):
        raise Malformed("the body is not an object")
    _check_shapes(body)
    return body


def _json(text: str, name: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Malformed(f"{name} is not JSON: {str(exc)[:80]}") from None


def _object(value: Any, name: str, *, required: bool = False) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{name} must be an object")
    return value


def _string(value: Any, name: str, *, required: bool = False, limit: int = MAX_VALUE) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or (required and not value):
        raise Malformed(f"{name} must be a string")
    if len(value) > limit:
        raise Malformed(f"{name} is longer than {limit} characters")


def _check_view(view: dict[str, Any]) -> None:
    """What bolt and the modal listeners read of a submitted view: its type (bolt's routing), and
    each input's `value`, a string when present (a reason is `.strip()`ped)."""
    _string(view.get("type"), "view.type", required=True, limit=100)
    _string(view.get("callback_id"), "view.callback_id", limit=255)
    _string(view.get("private_metadata"), "view.private_metadata", limit=3000)
    values = _object(_object(view.get("state"), "view.state").get("values"), "view.state.values")
    for block_id, block in values.items():
        for input_id, element in _object(block, f"view.state.values.{block_id}", required=True).items():
            where = f"view.state.values.{block_id}.{input_id}"
            _string(_object(element, where, required=True).get("value"), f"{where}.value")


def _check_shapes(body: dict[str, Any]) -> None:
    kind = body.get("type")
    for key in ("team", "enterprise", "channel", "container", "view"):
        if body.get(key) is not None and not isinstance(body[key], dict | str):
            raise Malformed(f"{key} must be an object")
    if kind in ("block_actions", "view_submission", "view_closed", "shortcut", "message_action"):
        _string(_object(body.get("user"), "user", required=True).get("id"), "user.id", required=True)
    if kind == "block_actions":
        actions = body.get("actions")
        if not isinstance(actions, list) or not actions:
            raise Malformed("actions must be a non-empty list")
        for i, action in enumerate(actions):
            action = _object(action, f"actions.{i}", required=True)
            _string(action.get("action_id"), f"actions.{i}.action_id", required=True, limit=255)
            value = action.get("value")
            _string(value, f"actions.{i}.value")
            if isinstance(value, str) and value.isdigit() and len(value) > MAX_DIGITS:
                raise Malformed(f"actions.{i}.value: more than {MAX_DIGITS} digits is not an action id")
    if kind in ("view_submission", "view_closed"):
        _check_view(_object(body.get("view"), "view", required=True))
    if "command" in body:
        _string(body.get("command"), "command", required=True, limit=100)
        _string(body.get("user_id"), "user_id", required=True, limit=100)
        # Any length, any number: what a person typed is theirs to get wrong, and the command
        # answers them ephemerally ("too long", "no action …"; handlers.listeners.command_text).
        # A 400 here would show them nothing but Slack's "failed with the error…". The body's size
        # is already capped (client_max_size), and a string is all the listener relies on.
        _string(body.get("text"), "text", limit=MAX_BODY_BYTES)
    if kind == "event_callback":
        _object(body.get("event"), "event", required=True)
    try:  # what bolt itself will read: it must not raise on this shape either
        extract_team_id(body)
        extract_enterprise_id(body)
    except (TypeError, AttributeError, KeyError, IndexError) as exc:
        raise Malformed(f"team or enterprise: {exc}") from None


def ids(body: dict[str, Any]) -> tuple[str | None, str | None]:
    team, enterprise = extract_team_id(body), extract_enterprise_id(body)
    return (team if isinstance(team, str) else None), (enterprise if isinstance(enterprise, str) else None)
