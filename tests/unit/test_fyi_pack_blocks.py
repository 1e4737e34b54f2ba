"""A pack of FYIs (handlers.blocks.storm.fyi_pack): every action named in the text, hostile text
escaped, and even a pack of worst-case lines within Slack's block and section limits."""

from __future__ import annotations

from datetime import UTC, datetime

from slack_sdk.models.blocks import Block

from bot.delivery.messages import Kind
from bot.delivery.packing import PACK_SIZES
from handlers.blocks.kit import MAX_BLOCKS, SECTION_MAX
from handlers.blocks.storm import fyi_pack
from storage.models import Action


def action(n: int, summary: str, action_type: str = "reindex") -> Action:
    return Action(id=n, agent_id=1, kind="executed", service="batch", action_type=action_type,
                  environment="production", summary=summary, rationale="nightly", mode="autonomous",
                  status="recorded",
                  created_at=datetime(2026, 3, 1, tzinfo=UTC))


def test_every_action_is_named_and_hostile_text_escaped() -> None:
    fyis = [(action(n, f"<!channel> shard {n} & <@U0VP>"), "agent<b>") for n in range(1, 81)]
    msg = fyi_pack(fyis)
    assert msg["text"].endswith("actions " + ", ".join(str(n) for n in range(1, 81)))
    body = str(msg["blocks"])
    assert "<!channel>" not in body and "<@U0VP>" not in body and "&lt;!channel&gt;" in body
    assert all(f"*{n}*" in body for n in range(1, 81))


def test_a_full_pack_of_worst_case_lines_fits_slack() -> None:
    size = PACK_SIZES[Kind.FYI]
    fyis = [(action(n, "&" * 500, action_type="<" * 200), "&" * 200) for n in range(size)]
    msg = fyi_pack(fyis)
    assert len(msg["blocks"]) <= MAX_BLOCKS
    assert "more blocks not shown" not in str(msg["blocks"])  # nothing cut: every line is there
    for block in msg["blocks"]:
        Block.parse(block).validate_json()  # type: ignore[union-attr]
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= SECTION_MAX
