"""Acting as a person in a browser-less client: find an action page's signed link on a card the
fake Slack received, open it, and submit its forms (with the CSRF cookie, as a browser would)."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.demo.fakeslack import Call, FakeSlack

_LINK = re.compile(r"<(https?://[^|>]+/[as]/[^|>]+)\|")


def page_links(call: Call | dict[str, Any]) -> list[str]:
    """Every signed page link (action or service) in a message's blocks and text."""
    args = call.args if isinstance(call, Call) else call
    return [html.unescape(m) for m in _LINK.findall(str(args.get("blocks") or "") + str(args.get("text") or ""))]


async def link_posted(fake_slack: FakeSlack, channel: str, action_id: int) -> str:
    """The action page link on the first message about `action_id` posted to `channel`, whatever the
    card shows by then (a card sent after a short timeout already reads "expired", without buttons)."""

    def found() -> list[str]:
        return [link for c in fake_slack.posts(channel) for link in page_links(c)
                if urlsplit(link).path == f"/a/{action_id}"]

    links: list[str] = await fake_slack.wait_for(found)
    return links[0]


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page has no form"
    return match.group(1)


def browser() -> aiohttp.ClientSession:
    """A client that keeps cookies for 127.0.0.1 (aiohttp's default jar ignores IP hosts)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
