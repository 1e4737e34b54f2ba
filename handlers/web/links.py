"""Signed links to the web pages: an HMAC over the page (action or service), the Slack user (or
channel) it was sent to, and its expiry. The key is COUNTERSIGN_LINK_SECRET, or else derived from
SLACK_SIGNING_SECRET (HMAC-SHA256 of a fixed label), so rotating either invalidates old links."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from bot.config import Settings

LIFETIME = timedelta(days=7)
_DERIVE_LABEL = b"countersign web links v1"
_EPHEMERAL_KEY = secrets.token_bytes(32)  # neither secret set (a CLI context): links die with the process


def link_key(settings: Settings) -> bytes:
    """COUNTERSIGN_LINK_SECRET if set, else a key derived from the Slack signing secret."""
    own = settings.link_secret.get_secret_value() if settings.link_secret else ""
    if own:
        return hashlib.sha256(own.encode()).digest()
    slack = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    if slack:
        return hmac.new(slack.encode(), _DERIVE_LABEL, hashlib.sha256).digest()
    return _EPHEMERAL_KEY


def _mac(key: bytes, *parts: str) -> str:
    digest = hmac.new(key, "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class Grant:
    """What a valid link grants: `viewer` (a Slack user id, or a channel id for a channel's card)
    may see `page` ("a/42" or "s/checkout-api") until `expires` (unix seconds)."""

    page: str
    viewer: str
    expires: int

    @property
    def is_person(self) -> bool:
        return self.viewer[:1] in ("U", "W")

    def query(self, key: bytes) -> dict[str, str]:
        return {"u": self.viewer, "e": str(self.expires), "s": _mac(key, self.page, self.viewer, str(self.expires))}


def action_page(action_id: int) -> str:
    return f"a/{action_id}"


def service_page(service: str) -> str:
    return f"s/{service}"


def sign(key: bytes, base_url: str, page: str, viewer: str, now: datetime, lifetime: timedelta = LIFETIME) -> str:
    """The full signed URL of `page` for `viewer`."""
    grant = Grant(page, viewer, int((now + lifetime).timestamp()))
    return f"{base_url.rstrip('/')}/{page}?{urlencode(grant.query(key))}"


class LinkRefused(Exception):
    """Why a link does not open its page (shown on the 403 page)."""


def check(key: bytes, page: str, params: dict[str, str], now: datetime) -> Grant:
    """The grant a request's query carries, or LinkRefused saying what is wrong with it."""
    viewer, expires, signature = params.get("u", ""), params.get("e", ""), params.get("s", "")
    if not (viewer and expires and signature):
        raise LinkRefused("This link is not signed. Open the page from its link in Slack.")
    if not expires.isdigit():
        raise LinkRefused("This link was altered: its signature does not match.")
    if not hmac.compare_digest(_mac(key, page, viewer, expires), signature):
        raise LinkRefused("This link was altered, or was signed for another page or person: its signature "
                          "does not match.")
    if int(expires) < now.timestamp():
        raise LinkRefused("This link has expired (links last 7 days). Ask for a new one in Slack: "
                          "`/ai-actions show ID`.")
    return Grant(page, viewer, int(expires))


def csrf_token(key: bytes, cookie: str, grant: Grant) -> str:
    """The form token: bound to the browser's CSRF cookie and to the signed link (double submit)."""
    return _mac(key, "csrf", cookie, grant.page, grant.viewer, str(grant.expires))


def csrf_ok(key: bytes, cookie: str, grant: Grant, token: str) -> bool:
    return bool(cookie and token) and hmac.compare_digest(csrf_token(key, cookie, grant), token)


def action_url(settings: Settings, action_id: int, viewer: str, now: datetime) -> str:
    """The signed link to action `action_id`'s page for `viewer` (a user id, or a channel's id)."""
    return sign(link_key(settings), settings.base_url, action_page(action_id), viewer, now)


def service_url(settings: Settings, service: str, viewer: str, now: datetime) -> str:
    return sign(link_key(settings), settings.base_url, service_page(service), viewer, now)
