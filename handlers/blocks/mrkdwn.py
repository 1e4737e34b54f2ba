"""Slack mrkdwn and Block Kit basics shared by every builder: escaping, clipping to Block Kit's
limits (with a pointer to the full record), reader-local dates and mentions. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

# Block Kit limits (api.slack.com/reference/block-kit): header 150, section text 3000, a field
# 2000, button text 75, modal title 24; a message holds at most 50 blocks.
HEADER_MAX, SECTION_MAX, FIELD_MAX, CONTEXT_MAX, FALLBACK_MAX, MAX_BLOCKS = 150, 3000, 2000, 2000, 3000, 50
REASON_MAX = 3000
Message = dict[str, Any]


def escape(text: object) -> str:
    """Slack's three control characters (api.slack.com/reference/surfaces/formatting#escaping)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int, pointer: str = "") -> str:
    """`text` within `limit` characters, ending with … and `pointer` when cut (never mid-entity)."""
    if len(text) <= limit:
        return text
    suffix = "…" + pointer
    cut = text[: max(0, limit - len(suffix))]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]  # do not leave half an &amp;
    return cut.rstrip() + suffix


def more(action_id: int | None) -> str:
    """Where the full text is, when a card had to cut it."""
    return f" _(truncated: full record with `/ai-actions show {action_id}`)_"


def slack_date(at: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A date each reader sees in their own time zone, with a UTC fallback."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{fmt}|{fallback}>"


def mention(spec: str | None, people: Mapping[str, str] | None = None) -> str:
    """A user or channel as Slack renders it; `people` maps emails to the user ids they resolved to."""
    if not spec:
        return "nobody"
    target = (people or {}).get(spec, spec)
    if target[:1] in ("U", "W") and target.isalnum():
        return f"<@{target}>"
    if target[:1] in ("C", "G") and target.isalnum():
        return f"<#{target}>"
    return escape(spec)


def section(text: str, limit: int = SECTION_MAX, pointer: str = "") -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, limit, pointer)))


def context(*texts: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=clip(t, CONTEXT_MAX)) for t in texts[:10]])


def message(text: str, blocks: Sequence[Block]) -> Message:
    return {
        "text": clip(text, FALLBACK_MAX),
        "blocks": [b.to_dict() for b in blocks[:MAX_BLOCKS]],
        "unfurl_links": False,
        "unfurl_media": False,
    }
