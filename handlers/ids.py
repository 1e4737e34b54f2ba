"""Every identifier Slack sends back to us: button action_ids, modal callback_ids, block_ids.

tests/test_manifest.py checks that what handlers register here is what manifest.yml declares.
"""

from __future__ import annotations

from enum import StrEnum


class ActionId(StrEnum):
    """Buttons on an action card; each carries the Countersign action id in `value`."""

    APPROVE = "approve"
    OVERRIDE = "override"
    ACKNOWLEDGE = "acknowledge"
    GRANT = "autonomy_grant"  # a suggestion's Grant button (value: the suggestion's token)
    DISMISS = "autonomy_dismiss"


class CallbackId(StrEnum):
    """Modals (view_submission callback_id)."""

    OVERRIDE = "override_modal"


class BlockId(StrEnum):
    DECIDE = "decide"  # the card's actions block
    REASON = "reason"  # the override modal's input block


class InputId(StrEnum):
    """Inputs inside modals: read from view.state.values, never dispatched as actions."""

    REASON = "reason_input"
