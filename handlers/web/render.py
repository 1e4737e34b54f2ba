"""The Jinja2 environment of the web pages: autoescaped templates shipped in the package, and the
filters that format dates, durations and people (Slack ids as names)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import jinja2
from markupsafe import Markup

from bot.policy.durations import spoken

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("handlers.web", "templates"),
    autoescape=True,  # every value is HTML-escaped: agent text never becomes markup
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,  # the templates ship in the package: no stat() of each file on every render
)
# A slot marks where a pre-encoded block goes in a rendered page (render_bytes). Random per
# process, and an HTML comment: escaped agent text can never forge one.
_SLOT = f"<!--slot-{secrets.token_hex(8)}:"
_SLOTS = re.compile(re.escape(_SLOT) + r"(\w+)-->")


def _utc(at: datetime) -> datetime:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


def when(at: datetime | None) -> str:
    return _utc(at).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "-"


def until(at: datetime, now: datetime) -> str:
    seconds = (_utc(at) - _utc(now)).total_seconds()
    return f"in {spoken(seconds)}" if seconds >= 0 else f"overdue by {spoken(seconds)}"


@jinja2.pass_context
def person(ctx: Mapping[str, Any], spec: str | None) -> str:
    """A person or channel as the page's `names` label it (handlers.web.names.labels: "Name (U…)"),
    anything it does not know as itself."""
    if not spec:
        return "nobody"
    return str((ctx.get("names") or {}).get(spec) or spec)


ENV.filters.update(when=when, duration=spoken, until=until, person=person)


def render(template: str, **values: Any) -> str:
    return ENV.get_template(template).render(**values)


def slot(name: str) -> Markup:
    """A placeholder for the part `name`, filled per request (see `parts`)."""
    return Markup(f"{_SLOT}{name}-->")


Parts = tuple[bytes | str, ...]  # encoded page text, and (str) the names of the slots between


def parts(template: str, **values: Any) -> Parts:
    """A page rendered once, split at its slots and encoded: `fill` then costs a join, not a
    render (and not the encoding of 120 KiB of non-ASCII text, which alone took ~0.4 ms)."""
    pieces = _SLOTS.split(render(template, **values))
    return tuple(piece if i % 2 else piece.encode() for i, piece in enumerate(pieces))


def fill(page: Parts, values: Mapping[str, str]) -> bytes:
    """The page with each slot replaced by values[name] (markup: escape what needs it)."""
    return b"".join(piece if isinstance(piece, bytes) else values[piece].encode() for piece in page)
