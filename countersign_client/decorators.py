"""Decorators that put a named human behind an agent's coroutine.

    @requires_approval(service="checkout-api", action_type="rollback",
                       summary="Roll back checkout-api to {version}", rationale="Error rate 12% since deploy")
    async def rollback(version: str) -> None: ...

Every field may be a string (formatted with the call's arguments by name, `str.format` style, so
`{version}` above is the argument; write `{{` for a literal brace), a callable taking the call's
arguments and returning the value, or a plain value (confidence, evidence, metadata, model).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from countersign_client.client import CountersignClient
from countersign_client.errors import (
    CountersignError,
    Denied,
    NotApproved,
    Overridden,
    ReportFailed,
    TimedOut,
)

P = ParamSpec("P")
R = TypeVar("R")
AsyncFn = Callable[P, Awaitable[R]]

_current: ContextVar[dict[str, Any] | None] = ContextVar("countersign_action", default=None)

log = logging.getLogger("countersign_client")


def current_action() -> dict[str, Any] | None:
    """Inside a function run by @requires_approval: the approved action (decision.by says who)."""
    return _current.get()


def check_approved(action: dict[str, Any]) -> dict[str, Any]:
    """Return the action if it may run; raise Denied / Overridden / TimedOut otherwise."""
    status, decision = action.get("status"), action.get("decision") or {}
    what = f"action {action.get('id')} ({action.get('action_type')} on {action.get('service')})"
    by = decision.get("by") or {}
    who = by.get("name") or by.get("slack_user_id") or "someone"
    if by.get("name") and by.get("slack_user_id"):
        who = f"{by['name']} ({by['slack_user_id']})"
    reason = f": {decision['reason']}" if decision.get("reason") else ""
    if status in ("approved", "recorded", "acknowledged"):
        return action
    if status == "expired":
        if decision.get("outcome") == "approved":  # the policy's on_timeout: approve
            return action
        raise TimedOut(action, f"{what} expired unanswered; the policy denied it{reason}")
    if status == "denied":
        raise Denied(action, f"{what} was denied by {who}{reason}")
    if status == "overridden":
        raise Overridden(action, f"{what} was overridden by {who}{reason}")
    if status == "pending":
        raise TimedOut(action, f"{what} is still pending: no decision before the client stopped waiting")
    raise NotApproved(action, f"{what} has status {status!r}")


def requires_approval(*, service: Any, action_type: Any, rationale: Any, summary: Any = None,
                      environment: Any = None, confidence: Any = None, evidence: Any = None,
                      metadata: Any = None, model: Any = None, external_id: Any = None,
                      callback_url: Any = None, timeout: float = 3600.0,
                      client: CountersignClient | None = None) -> Callable[[AsyncFn[P, R]], AsyncFn[P, R]]:
    """Propose the call; run it only once a human approves (or the policy lets it run autonomously).

    Raises Refused (the policy forbids it), Denied, TimedOut (expired, or no decision within
    `timeout` seconds), all before the wrapped coroutine starts. `client` defaults to one built from
    COUNTERSIGN_URL / COUNTERSIGN_TOKEN for each call.
    """
    fields = {"service": service, "action_type": action_type, "rationale": rationale, "summary": summary,
              "environment": environment, "confidence": confidence, "evidence": evidence,
              "metadata": metadata, "model": model, "external_id": external_id, "callback_url": callback_url}

    def decorate(fn: AsyncFn[P, R]) -> AsyncFn[P, R]:
        describe = _Describer(fn, fields)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            body = describe(args, kwargs)
            async with _using(client) as cs:
                action = await cs.propose(**body)
                if action.get("decision") is None:
                    action = await cs.wait_for_decision(action["id"], timeout)
            token = _current.set(check_approved(action))
            try:
                value = await fn(*args, **kwargs)
            except BaseException as exc:
                await _report_result(action, "failed", f"{type(exc).__name__}: {exc}")
                raise
            finally:
                _current.reset(token)
            await _report_result(action, "succeeded", None)
            return value

        async def _report_result(action: dict[str, Any], result: str, detail: str | None) -> None:
            """The result of the approved call, reported by itself; never hides the call's own outcome."""
            try:
                async with _using(client) as cs:
                    await cs.report_result(action["id"], result, detail=detail[:20000] if detail else None)
            except Exception:
                log.warning("could not report the result of action %s", action.get("id"), exc_info=True)

        return wrapper

    return decorate


def reports_action(*, service: Any, action_type: Any, rationale: Any, summary: Any = None,
                   environment: Any = None, confidence: Any = None, evidence: Any = None,
                   metadata: Any = None, model: Any = None, external_id: Any = None, callback_url: Any = None,
                   client: CountersignClient | None = None) -> Callable[[AsyncFn[P, R]], AsyncFn[P, R]]:
    """Run the call, then report it as an executed action for its owner to acknowledge or override.

    A call that raises is reported too (metadata result "failed" and the error), then the error is
    re-raised. String fields may also use `{result}` (the call's return value) and `{error}`.
    If the call succeeded but the report could not be made, ReportFailed carries the result.
    """
    fields = {"service": service, "action_type": action_type, "rationale": rationale, "summary": summary,
              "environment": environment, "confidence": confidence, "evidence": evidence,
              "metadata": metadata, "model": model, "external_id": external_id, "callback_url": callback_url}

    def decorate(fn: AsyncFn[P, R]) -> AsyncFn[P, R]:
        describe = _Describer(fn, fields)

        async def report(args: Any, kwargs: Any, started: datetime, result: Any,
                         error: BaseException | None) -> None:
            body = describe(args, kwargs, result=result, error=error)
            outcome: dict[str, Any] = {"result": "failed" if error else "succeeded",
                                       "duration_seconds": round((_now() - started).total_seconds(), 3)}
            if error is not None:
                outcome["error"] = f"{type(error).__name__}: {error}"[:2000]
                body["summary"] = f"{body['summary']} (FAILED: {type(error).__name__})"
            body["metadata"] = {**(body.get("metadata") or {}), **outcome}
            async with _using(client) as cs:
                await cs.report(executed_at=started, **body)

        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = _now()
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                try:
                    await report(args, kwargs, started, None, exc)
                except CountersignError as failed:  # the original error matters more; keep both
                    exc.add_note(f"Countersign: reporting this failure failed too: {failed}")
                raise
            try:
                await report(args, kwargs, started, result, None)
            except CountersignError as failed:
                message = f"{fn.__qualname__} ran, but reporting it failed: {failed}"
                raise ReportFailed(result, message) from failed
            return result

        return wrapper

    return decorate


def _now() -> datetime:
    return datetime.now(UTC)


@asynccontextmanager
async def _using(client: CountersignClient | None) -> AsyncIterator[CountersignClient]:
    if client is not None:
        yield client
        return
    async with CountersignClient() as fresh:  # from the environment, closed after the call
        yield fresh


class _Describer:
    """Turns the decorator's fields and one call's arguments into the action's body."""

    def __init__(self, fn: Callable[..., Any], fields: dict[str, Any]) -> None:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn.__qualname__} must be an `async def` function")
        self.fn, self.fields, self.signature = fn, fields, inspect.signature(fn)

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any], **extra: Any) -> dict[str, Any]:
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        names = {**bound.arguments, **extra}
        body: dict[str, Any] = {}
        for field, value in self.fields.items():
            if callable(value):
                value = value(*args, **kwargs)
            elif isinstance(value, str) and "{" in value:
                try:
                    value = value.format_map(names)
                except (KeyError, IndexError) as exc:
                    raise TypeError(f"{field}={self.fields[field]!r}: {exc} is not an argument of "
                                    f"{self.fn.__qualname__}") from None
            if value is not None:
                body[field] = value
        if "summary" not in body:  # the call itself describes the action
            shown = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
            body["summary"] = f"{self.fn.__qualname__}({shown})"[:3000]
        return body
