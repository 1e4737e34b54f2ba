"""What the client raises: API errors by HTTP status, and why an action may not run."""

from __future__ import annotations

from typing import Any


class CountersignError(Exception):
    """Base class of everything this package raises."""


class Unavailable(CountersignError):
    """The server could not be reached (or kept answering 5xx) after every retry."""


class ApiError(CountersignError):
    """The server answered with an error: SPEC's {"error": {"code", "message"}}."""

    def __init__(self, status: int, body: Any) -> None:
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        self.status = status
        self.code: str = str(error.get("code") or f"http_{status}")
        self.message: str = str(error.get("message") or body or f"HTTP {status}")
        self.body = body
        super().__init__(f"{status} {self.code}: {self.message}")


class Refused(ApiError):
    """403: the policy forbids this action (it was refused at ingest and reported to the service channel)."""


def api_error(status: int, body: Any) -> ApiError:
    return Refused(status, body) if status == 403 else ApiError(status, body)


class NotApproved(CountersignError):
    """A proposal that may not run. `action` is the action JSON as the server last gave it."""

    def __init__(self, action: dict[str, Any], message: str) -> None:
        self.action = action
        self.action_id: int | None = action.get("id")
        self.decision: dict[str, Any] | None = action.get("decision")
        super().__init__(message)


class Denied(NotApproved):
    """A human denied (overrode) the proposal; `decision["reason"]` says why."""


class Overridden(NotApproved):
    """A human overrode an executed action: they ask for it to be reverted."""


class TimedOut(NotApproved):
    """No approval in time: either the escalation timed out on the server (status `expired`,
    `still_pending` False) or the client stopped waiting while it was still pending
    (`still_pending` True: the owner may still answer; call wait_for_decision again)."""

    @property
    def still_pending(self) -> bool:
        return self.action.get("status") == "pending"


class ReportFailed(CountersignError):
    """@reports_action: the wrapped call succeeded, but reporting it failed after every retry.
    `result` holds what the call returned; the cause is chained."""

    def __init__(self, result: Any, message: str) -> None:
        self.result = result
        super().__init__(message)
