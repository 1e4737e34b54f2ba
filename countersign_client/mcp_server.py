"""The MCP server behind `countersign mcp`: lets an LLM agent ask a named human for a decision as a
tool call (`request_approval`), keep waiting for one (`get_decision`), report what it did
(`report_action`) and how it went (`report_result`). Each tool calls the Countersign HTTP API with
countersign_client, as the agent whose token is in COUNTERSIGN_TOKEN, so the server's policy,
paging and ledger apply unchanged.
"""

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from countersign_client import ApiError, CountersignClient, CountersignError, Refused

try:  # mcp 2.x
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError
except ImportError:  # mcp 1.x: the same API under its old name
    from mcp.server.fastmcp import Context  # type: ignore[no-redef,attr-defined]
    from mcp.server.fastmcp import FastMCP as MCPServer  # type: ignore[no-redef,attr-defined]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

MAX_WAIT_SECONDS = 3600.0
PROGRESS_EVERY = 15.0  # seconds between progress notifications while waiting (keeps clients patient)

INSTRUCTIONS = """Countersign makes every operations action owned by a named human.
Before a risky change (deploy, rollback, restart, scale, delete, config change) call request_approval
and act ONLY if it answers may_proceed=true. If it is still pending, call get_decision with its
action_id later; never act on a pending, denied, expired or refused request. After acting on your own
(where policy allows), call report_action so the owner can acknowledge or override it."""


class EvidenceLink(BaseModel):
    label: str = Field(description="What the link shows, e.g. 'error rate dashboard'")
    url: str = Field(description="http(s) link to the evidence")


class ModelInfo(BaseModel):
    """The model that decided, so a postmortem can say which model version made the call."""

    model_config = ConfigDict(extra="forbid")  # as the API: a misspelt key is refused, not dropped
    provider: str | None = Field(default=None, description="e.g. anthropic, openai")
    name: str | None = Field(default=None, description="e.g. claude-sonnet-4")
    version: str | None = Field(default=None, description="the exact version or snapshot")


def _optional(callback_url: str | None, external_id: str | None, model: ModelInfo | None,
              metadata: dict[str, Any] | None) -> dict[str, Any]:
    """The API's optional fields as the client takes them. The server validates them (the same
    rules as an agent's own POST /v1/actions; a 400 names the field and becomes a tool error)."""
    return {"callback_url": callback_url, "external_id": external_id, "metadata": metadata,
            "model": model.model_dump(exclude_none=True) if model is not None else None}


class Decision(BaseModel):
    """What the human (or the policy) decided about a proposed action."""

    action_id: int | None = Field(description="Countersign's id for the action (use it with get_decision)")
    status: str = Field(description="approved | denied | expired | recorded | pending | refused")
    may_proceed: bool = Field(description="true only if the action may be carried out now")
    message: str = Field(description="What happened, in words")
    decided_by: str | None = None
    reason: str | None = None
    owner: str | None = None
    url: str | None = None


class Report(BaseModel):
    """An executed action, as recorded for its owner to acknowledge or override."""

    action_id: int
    status: str = Field(description="pending (awaiting acknowledgement) | recorded (autonomous)")
    mode: str
    owner: str | None = None
    policy_violation: bool = Field(description="true if this action needed approval before it ran")
    message: str
    url: str | None = None


def decision_of(action: dict[str, Any]) -> Decision:
    status, decision = action["status"], action.get("decision") or {}
    by = decision.get("by") or {}
    who = by.get("name") or by.get("slack_user_id")
    on_timeout_approved = status == "expired" and decision.get("outcome") == "approved"
    may = status in ("approved", "recorded") or on_timeout_approved
    reason = decision.get("reason")
    messages = {
        "approved": f"APPROVED by {who}. You may proceed.",
        "recorded": "Allowed autonomously by policy (the service owner owns the rule). You may proceed.",
        "denied": f"DENIED by {who}: {reason}. Do not proceed.",
        "expired": ("No human answered in time; the policy "
                    + ("approved it. You may proceed." if may else "denied it. Do not proceed.")),
        "pending": (f"Still waiting for {action.get('owner')} (escalation level "
                    f"{(action.get('escalation') or {}).get('level')}). Do not proceed yet: call "
                    f"get_decision with action_id {action['id']} to keep waiting."),
    }
    return Decision(action_id=action["id"], status=status, may_proceed=may, decided_by=who, reason=reason,
                    owner=action.get("owner"), url=(action.get("links") or {}).get("self"),
                    message=messages.get(status, f"Status {status}. Do not proceed."))


def build_server(connect: Callable[[], CountersignClient]) -> Any:
    """The MCP server; `connect` makes a client for one tool call (from the environment in the CLI)."""
    server = MCPServer("countersign", instructions=INSTRUCTIONS)

    async def wait(cs: CountersignClient, action: dict[str, Any], seconds: float,
                   ctx: Context | None) -> dict[str, Any]:
        """Long-poll in slices, reporting progress between them so the client knows we are alive."""
        deadline = time.monotonic() + min(max(seconds, 0.0), MAX_WAIT_SECONDS)
        while action.get("decision") is None and (left := deadline - time.monotonic()) > 0:
            action = await cs.wait_for_decision(action["id"], min(left, PROGRESS_EVERY))
            if action.get("decision") is None and ctx is not None:
                waited = seconds - (deadline - time.monotonic())
                await ctx.report_progress(waited, seconds, f"waiting for {action.get('owner')}")
        return action

    @server.tool()
    async def request_approval(
        service: str, action_type: str, summary: str, rationale: str, environment: str = "production",
        confidence: float | None = None, evidence: list[EvidenceLink] | None = None,
        wait_seconds: float = 300, request_key: str | None = None, callback_url: str | None = None,
        external_id: str | None = None, model: ModelInfo | None = None, metadata: dict[str, Any] | None = None,
        ctx: Context | None = None,
    ) -> Decision:
        """Ask the accountable human to approve an action BEFORE you carry it out, and wait for the answer.

        service: the service as named in Countersign's policy; action_type: e.g. rollback, restart,
        scale_down; summary: what you will do, in one line; rationale: why (required: an action whose
        reason is unknown cannot be owned); confidence: 0..1; evidence: links that support it.
        Waits up to wait_seconds (max 3600). Reuse the same request_key when retrying this same
        request, so the owner is not paged twice. Proceed only if may_proceed is true.
        Optional: callback_url (the decision is POSTed there, signed), external_id (your own id for
        it), model ({provider, name, version}: you, the model deciding), metadata (any JSON object)."""
        key = request_key or str(uuid.uuid4())
        try:
            async with connect() as cs:
                action = await cs.propose(service=service, action_type=action_type, summary=summary,
                                          rationale=rationale, environment=environment, confidence=confidence,
                                          evidence=[e.model_dump() for e in evidence or []],
                                          idempotency_key=key,
                                          **_optional(callback_url, external_id, model, metadata))
                return decision_of(await wait(cs, action, wait_seconds, ctx))
        except Refused as exc:
            return Decision(action_id=None, status="refused", may_proceed=False,
                            message=f"REFUSED by policy: {exc.message}. Do not proceed.")
        except CountersignError as exc:
            raise ToolError(_problem(exc)) from exc

    @server.tool()
    async def get_decision(action_id: int, wait_seconds: float = 60, ctx: Context | None = None) -> Decision:
        """Check (and wait up to wait_seconds for) the decision on an action you asked about earlier."""
        try:
            async with connect() as cs:
                return decision_of(await wait(cs, await cs.get(action_id), wait_seconds, ctx))
        except CountersignError as exc:
            raise ToolError(_problem(exc)) from exc

    @server.tool()
    async def report_action(
        service: str, action_type: str, summary: str, rationale: str, environment: str = "production",
        confidence: float | None = None, evidence: list[EvidenceLink] | None = None,
        executed_at: str | None = None, metadata: dict[str, Any] | None = None,
        request_key: str | None = None, callback_url: str | None = None, external_id: str | None = None,
        model: ModelInfo | None = None,
    ) -> Report:
        """Report an action you ALREADY carried out, so its owner acknowledges (takes responsibility)
        or overrides it. executed_at: ISO 8601 time it ran (default now). Reuse request_key when retrying.
        Optional: callback_url (the acknowledgement or override is POSTed there, signed), external_id
        (your own id for it), model ({provider, name, version}: you, the model that decided)."""
        try:
            async with connect() as cs:
                action = await cs.report(service=service, action_type=action_type, summary=summary,
                                         rationale=rationale, environment=environment, confidence=confidence,
                                         evidence=[e.model_dump() for e in evidence or []],
                                         executed_at=executed_at,
                                         idempotency_key=request_key or str(uuid.uuid4()),
                                         **_optional(callback_url, external_id, model, metadata))
        except CountersignError as exc:
            raise ToolError(_problem(exc)) from exc
        if action["status"] == "recorded":
            message = "Recorded; the policy lets this run autonomously, no response needed."
        elif action["policy_violation"]:
            message = (f"Recorded as a POLICY VIOLATION: {action_type} on {service} needed approval first. "
                       "Leadership was paged. Next time call request_approval before acting.")
        else:
            message = f"Reported; {action.get('owner')} was asked to acknowledge or override it."
        return Report(action_id=action["id"], status=action["status"], mode=action["mode"],
                      owner=action.get("owner"), policy_violation=action["policy_violation"], message=message,
                      url=(action.get("links") or {}).get("self"))

    @server.tool()
    async def report_result(action_id: int, result: Literal["succeeded", "failed", "rolled_back"],
                            detail: str | None = None,
                            evidence: list[EvidenceLink] | None = None) -> dict[str, Any]:
        """After an action you carried out has run, say how it went: result is "succeeded", "failed"
        or "rolled_back"; detail says what happened. A failure is told to the service's team and the
        person accountable, and counts toward the automatic brake."""
        try:
            async with connect() as cs:
                return await cs.report_result(action_id, result, detail=detail,
                                              evidence=[e.model_dump() for e in evidence or []])
        except CountersignError as exc:
            raise ToolError(_problem(exc)) from exc

    return server


def _problem(exc: CountersignError) -> str:
    if isinstance(exc, ApiError):
        return f"Countersign answered {exc.status} {exc.code}: {exc.message}"
    return f"Countersign is unreachable: {exc}"
