"""What a person typed after `/ai-actions`, read without trusting it. The request guard
(bot.slack_guard) lets any command text through so that a mistake gets an answer a person can
read; these are the limits the subcommands then apply (in Socket Mode too, where no guard runs)."""

from __future__ import annotations

MAX_TEXT = 4000  # past this, nothing is parsed: a pasted log is not a command
MAX_ID_DIGITS = 18  # an action id is a BIGINT: 19 digits may overflow it, so more name no action
SHOWN_DIGITS = 20  # how much of an impossible id the answer repeats


def too_long(text: str) -> str | None:
    """Why `text` is not read at all, or None."""
    if len(text) <= MAX_TEXT:
        return None
    return (f"That command is too long to read: {len(text):,} characters, at most {MAX_TEXT:,}. "
            "Nothing was done.")


def typed_id(args: list[str]) -> tuple[str, int | None] | None:
    """The action id in `ID …` (a leading `#` allowed): None when no number was typed (answer with
    the usage); (as typed, None) for a number no action can have (answer "no action"); else
    (as typed, the id). Only ASCII digits: `²` is a digit to str.isdigit() but not to int()."""
    raw = args[0].lstrip("#") if args else ""
    if not (raw.isascii() and raw.isdigit()):
        return None
    if len(raw) > MAX_ID_DIGITS:
        shown = raw if len(raw) <= SHOWN_DIGITS else raw[:SHOWN_DIGITS] + "…"
        return shown, None
    return raw, int(raw)
