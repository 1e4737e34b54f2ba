"""The one Block Kit vocabulary every builder speaks: Slack's limits, escaping, clipping, mentions,
dates, links, and the blocks themselves, as plain JSON dicts. Pure.

Plain dicts, not slack_sdk.models: building and validating model objects on every answer costs
more than the queries behind `/ai-actions` (bench/results/bench_queries.md); the unit tests
validate every builder's output with slack_sdk instead, and the fake Slack validates every call.

Escaping lives here and only here. Whatever an agent (or anyone outside Countersign) wrote goes
through `escape` before it reaches a mrkdwn text or a message's `text` fallback, so a summary like
`<!channel> *urgent*` can neither notify anyone nor format. plain_text objects (`plain`) are shown
verbatim by Slack, which neither parses mentions nor formats them, so they are only clipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# Block Kit limits (api.slack.com/reference/block-kit): header 150, section text 3000, a field 2000,
# a context element 2000, button text 75; a message holds 50 blocks and a Home tab view 100.
HEADER_MAX, SECTION_MAX, FIELD_MAX, CONTEXT_MAX, FALLBACK_MAX = 150, 3000, 2000, 2000, 3000
BUTTON_MAX, REASON_MAX, MAX_FIELDS, MAX_ELEMENTS = 75, 3000, 10, 10
MAX_BLOCKS, MAX_VIEW_BLOCKS = 50, 100

Block = dict[str, Any]  # one Block Kit block (or element), as Slack's JSON
Message = dict[str, Any]  # Web API arguments for a message: text, blocks, ...

# Slack mrkdwn has no escape for its formatting marks, so a mark an agent wrote is swapped for a
# look-alike that Slack does not read as markup. `_` between two letters or digits (snake_case)
# never formats in Slack, so identifiers like `scale_down` stay as they were typed.
_LOOKALIKE = {"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"}
_MARK = re.compile(r"(?<![^\W_])_|_(?![^\W_])|[*~`]")


def escape(text: object) -> str:
    """Text from outside Countersign, made inert for mrkdwn: Slack's three control characters
    (api.slack.com/reference/surfaces/formatting#escaping) and its formatting marks."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARK.sub(lambda m: _LOOKALIKE[m.group()], out)


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
    """Where the full text is, when a builder had to cut it."""
    return f" _(truncated: full record with `/ai-actions show {action_id}`)_"


def slack_date(at: datetime, fmt: str = "{date_short_pretty} at {time}") -> str:
    """A date each reader sees in their own time zone, with a UTC fallback."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{fmt}|{fallback}>"


def when(iso_text: str | None) -> str:
    """An ISO timestamp from a JSON snapshot (a record, the digest) as a reader-local date."""
    if not iso_text:
        return "-"
    return slack_date(datetime.fromisoformat(iso_text.replace("Z", "+00:00")))


def is_user(spec: str | None) -> bool:
    """Whether `spec` is a Slack user id (U…, or W… on Enterprise Grid)."""
    return spec is not None and spec[:1] in ("U", "W") and spec.isalnum()


def mention(spec: str | None, people: Mapping[str, str] | None = None) -> str:
    """A user or channel as Slack renders it; `people` maps emails to the user ids they resolved to.
    Anything that is not a Slack id (an unresolved email, a name) is shown escaped, never parsed."""
    if not spec:
        return "nobody"
    user = user_mention(spec, people)
    if user is not None:
        return user
    target = (people or {}).get(spec, spec)
    if target[:1] in ("C", "G") and target.isalnum():
        return f"<#{target}>"
    return escape(spec)


def user_mention(spec: str | None, people: Mapping[str, str] | None = None) -> str | None:
    """`<@U…>` when `spec` is a Slack user, or an email `people` resolved to one; else None (the
    caller says who it was another way, or leaves it out)."""
    target = (people or {}).get(spec or "", spec)
    return f"<@{target}>" if is_user(target) else None


def link(url: str, label: str) -> str:
    """A link whose URL and label came from outside: neither can close the link or start another."""
    safe = url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C").replace(" ", "%20")
    return f"<{safe}|{escape(label).replace('|', '¦')}>"


# --- blocks -----------------------------------------------------------------------------------------


def mrkdwn(text: str, limit: int = SECTION_MAX, pointer: str = "") -> Block:
    return {"type": "mrkdwn", "text": clip(text, limit, pointer)}


def plain(text: str, limit: int = HEADER_MAX) -> Block:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def section(text: str, limit: int = SECTION_MAX, pointer: str = "") -> Block:
    return {"type": "section", "text": mrkdwn(text, limit, pointer)}


def fields(texts: Sequence[str]) -> Block:
    """A section of up to ten short `*Label*\\nvalue` fields, shown two by two."""
    return {"type": "section", "fields": [mrkdwn(t, FIELD_MAX) for t in texts[:MAX_FIELDS]]}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t, CONTEXT_MAX) for t in texts[:MAX_ELEMENTS]]}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, HEADER_MAX)}


def divider() -> Block:
    return {"type": "divider"}


def button(label: str, action_id: str, value: str, style: str | None = None) -> Block:
    element: Block = {"type": "button", "action_id": action_id, "text": plain(label, BUTTON_MAX), "value": value}
    if style:
        element["style"] = style
    return element


def actions(block_id: str, elements: Sequence[Block]) -> Block:
    return {"type": "actions", "block_id": block_id, "elements": list(elements)}


def message(text: str, blocks: Sequence[Block], *, unfurl: bool = True) -> Message:
    """Web API arguments for a message. `text` is the notification and fallback (mrkdwn: escape what
    came from outside); past Slack's 50 blocks, the last one says how many were left out."""
    kept = list(blocks)
    if len(kept) > MAX_BLOCKS:
        kept = [*kept[: MAX_BLOCKS - 1], context(f"…{len(blocks) - MAX_BLOCKS + 1} more blocks not shown")]
    args: Message = {"text": clip(text, FALLBACK_MAX), "blocks": kept}
    if not unfurl:
        args.update(unfurl_links=False, unfurl_media=False)
    return args
