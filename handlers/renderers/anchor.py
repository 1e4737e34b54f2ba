"""The audit anchor message: the ledger's head (HASH@SEQ), posted to the leadership channel.

Once it is in Slack, it is outside the database: `countersign audit verify --against HASH@SEQ`
then catches even a rewrite of the whole ledger table. The text fallback carries the anchor
verbatim, so it can be found by searching Slack and copied as is.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from bot.delivery.messages import Kind
from bot.services import Services
from handlers.renderers.registry import renders


def anchor_message(payload: dict[str, Any]) -> dict[str, Any]:
    anchor, seq, reason = payload["anchor"], payload["seq"], payload.get("reason") or "on demand"
    blocks = [
        HeaderBlock(text="Audit ledger anchor"),
        SectionBlock(text=MarkdownTextObject(
            text=f"The responsibility ledger holds *{seq}* entr{'y' if seq == 1 else 'ies'}. Its head is:\n"
                 f"```{anchor}```")),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"Published {payload.get('at') or ''} ({reason}). Keep this message: "
                 f"`countersign audit verify --against {anchor}` proves the ledger still holds it.")]),
    ]
    return {
        "text": f"Audit ledger anchor: {anchor}",
        "blocks": [block.to_dict() for block in blocks],
        "unfurl_links": False,
    }


@renders(Kind.ANCHOR)
async def render_anchor(svc: Services, payload: dict[str, Any]) -> dict[str, Any] | None:
    return anchor_message(payload)
