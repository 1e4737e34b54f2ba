"""Cards and modals as a terminal shows them: the demo prints what Slack would display."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EMOJI = {
    ":raised_hand:": "✋",
    ":white_check_mark:": "✅",
    ":no_entry:": "⛔",
    ":no_entry_sign:": "🚫",
    ":leftwards_arrow_with_hook:": "↩️",
    ":hourglass:": "⌛",
    ":hourglass_flowing_sand:": "⏳",
    ":robot_face:": "🤖",
    ":rotating_light:": "🚨",
    ":eyes:": "👀",
    ":alarm_clock:": "⏰",
    ":arrow_up:": "⬆️",
    ":warning:": "⚠️",
    ":grey_question:": "❔",
}


def mrkdwn_to_text(text: str, names: Mapping[str, str]) -> str:
    """Slack mrkdwn as a terminal shows it: mentions by name, dates by their fallback, links spelled out."""
    text = re.sub(r"<@(\w+)>", lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<#(\w+)>", lambda m: "#" + names.get(m.group(1), m.group(1)), text)
    text = re.sub(r"<!date\^\d+\^[^|>]*\|([^>]*)>", r"\1", text)
    text = re.sub(r"<(https?://[^|>]+)\|([^>]+)>", r"\2 (\1)", text)
    text = re.sub(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])", r"\1", text)  # *bold*
    text = re.sub(r"(?<![\w_])_([^_\n]+)_(?![\w_])", r"\1", text)  # _italic_
    for code, char in EMOJI.items():
        text = text.replace(code, char)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def card_to_text(message: Mapping[str, Any], names: Mapping[str, str], *, indent: str = "    ") -> str:
    """A Block Kit message (or modal) as readable lines in a box."""
    lines: list[str] = []
    for block in message.get("blocks") or []:
        kind = block.get("type")
        if kind == "header":
            lines.append(mrkdwn_to_text(block["text"]["text"], names).upper())
        elif kind == "section":
            if block.get("text"):
                lines.extend(mrkdwn_to_text(block["text"]["text"], names).splitlines())
            fields = [
                mrkdwn_to_text(f["text"], names).replace("\n", ": ", 1).replace("*", "")
                for f in block.get("fields") or []
            ]
            for i in range(0, len(fields), 3):
                lines.append("   ".join(fields[i : i + 3]))
        elif kind == "context":
            lines.append(" · ".join(mrkdwn_to_text(e.get("text", ""), names) for e in block["elements"]))
        elif kind == "actions":
            lines.append("  ".join(f"[ {e['text']['text']} ]" for e in block["elements"]))
        elif kind == "input":
            lines.append(f"{block['label']['text']}  [______________________]")
        elif kind == "divider":
            lines.append("─" * 40)
    if not lines:
        lines = [mrkdwn_to_text(str(message.get("text", "")), names)]
    width = min(100, max(len(line) for line in lines) + 2)
    boxed = (
        [indent + "┌" + "─" * width] + [f"{indent}│ {line}" for line in lines] + [indent + "└" + "─" * width]
    )
    return "\n".join(boxed)
