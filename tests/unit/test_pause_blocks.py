"""`/ai-actions pauses`: the answer's fallback text counts what holds in words people read."""

from __future__ import annotations

from handlers.blocks.autonomy import pauses_message


def _pause(target: str) -> dict[str, object]:
    return {"target": target, "by": "U0OWNER", "until": "2026-12-06T05:00:00+00:00", "reason": "freeze"}


def test_the_pauses_answer_counts_one_and_many() -> None:
    assert pauses_message([_pause("search")])["text"] == "1 pause in force"
    assert pauses_message([_pause("search"), _pause("all")])["text"] == "2 pauses in force"
    assert pauses_message([])["text"] == "No pause holds."
    one = pauses_message([_pause("agent:deploy-bot")])
    assert "`agent:deploy-bot` by <@U0OWNER>" in str(one["blocks"]) and "freeze" in str(one["blocks"])
