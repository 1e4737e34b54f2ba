"""How a delivery that did not go through is classified: for good (`Permanent`, `PERMANENT_ERRORS`,
`NO_SUCH_METHOD`), Slack itself struggling (`SLACK_TROUBLE`, which counts towards the breaker), or no
answer at all within `CALL_TIMEOUT` (`NO_ANSWER`). Apart from the wire that raises these and the
relay that acts on them, so /healthz's rules (bot/api/post_health.py, paging_health.py) read the
same words without the Slack client."""

from __future__ import annotations

# Slack errors that retrying cannot fix: recorded, surfaced, and handed to escalation.
PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "invalid_auth", "missing_scope", "user_not_found",
    "users_not_found", "account_inactive", "is_archived", "not_authed", "token_revoked",
    "invalid_blocks", "invalid_arguments", "msg_too_long", "no_text", "cant_update_message",
    "message_not_found", "user_disabled", "channel_is_archived", "unknown_method", "not_allowed_token_type",
})
# HTTP statuses that say the Web API has no such method: Slack answers an unknown method
# `unknown_method`, but a proxy or a minimal stand-in answers 404/405/410 with no JSON at all. As
# permanent as `unknown_method`: retried, an owner given by e-mail behind a missing
# users.lookupByEmail was never paged and escalation never moved past them.
NO_SUCH_METHOD = frozenset({404, 405, 410})
# `ok: false` answers that mean Slack itself is struggling (count towards the breaker).
SLACK_TROUBLE = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout"})
# How a call that got no answer at all (timeout, refused or dropped connection) is recorded.
NO_ANSWER = "no answer"
CALL_TIMEOUT = 10.0  # seconds one Slack call or callback may take


class Permanent(Exception):
    """A delivery that must not be retried."""
