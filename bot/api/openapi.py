"""The OpenAPI document for the agents' API, generated from the same pydantic models the server uses."""

from __future__ import annotations

from typing import Any

from bot.contract.schemas import ActionIn, ResultIn

STATUSES = ["pending", "approved", "denied", "acknowledged", "overridden", "expired", "recorded"]
LEVELS = ["owner", "secondary", "leadership"]
_STR = {"type": "string"}
_OPT_STR = {"type": ["string", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time"}

DECISION: dict[str, Any] = {
    "type": "object",
    "required": ["outcome", "by", "accountability", "level", "via", "at", "reason"],
    "properties": {
        "outcome": {"type": "string", "enum": ["approved", "denied", "acknowledged", "overridden", "recorded",
                                               "unacknowledged"]},
        "by": {"type": "object", "required": ["slack_user_id", "name"],
               "properties": {"slack_user_id": _OPT_STR, "name": _OPT_STR}},
        "accountability": {"type": "string", "enum": ["explicit", "default", "policy"]},
        "level": {"type": ["string", "null"], "enum": [*LEVELS, None]},
        "via": {"type": "string", "enum": ["button", "slash", "api", "timeout", "policy"]},
        "at": _TIME,
        "reason": _OPT_STR,
    },
}

# The shape bot.serialize.action_json answers; tests validate real responses against it.
ACTION: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "kind", "status", "mode", "policy_violation", "agent", "service", "action_type",
                 "environment", "summary", "rationale", "confidence", "evidence", "executed_at",
                 "callback_url", "external_id", "model", "metadata", "owner", "secondary", "rule",
                 "escalation", "decision", "created_at", "updated_at", "links"],
    "properties": {
        "id": {"type": "integer"},
        "kind": {"type": "string", "enum": ["proposed", "executed"]},
        "status": {"type": "string", "enum": STATUSES},
        "mode": {"type": "string", "enum": ["autonomous", "acknowledge", "approve"]},
        "policy_violation": {"type": "boolean"},
        "agent": _OPT_STR, "service": _STR, "action_type": _STR, "environment": _STR,
        "summary": _STR, "rationale": _STR,
        "confidence": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "evidence": {"type": "array", "items": {"type": "object", "required": ["label", "url"],
                                                "properties": {"label": _STR, "url": _STR}}},
        "executed_at": _TIME, "callback_url": _OPT_STR, "external_id": _OPT_STR,
        "model": {"type": ["object", "null"]}, "metadata": {"type": ["object", "null"]},
        "owner": _OPT_STR, "secondary": _OPT_STR,
        "rule": {"type": "object", "required": ["index", "mode"], "properties": {
            "index": {"type": ["integer", "null"]}, "mode": _OPT_STR, "rule": {"type": ["object", "null"]}}},
        "escalation": {"type": "object", "required": ["level", "next_at"], "properties": {
            "level": {"type": ["string", "null"], "enum": [*LEVELS, None]}, "next_at": _TIME,
            "unreachable": {"type": "boolean", "description": "pending, and every level's page failed"},
            "failed_levels": {"type": "array", "items": _STR}}},
        "decision": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Decision"}]},
        "created_at": _TIME, "updated_at": _TIME,
        "links": {"type": "object", "required": ["self"], "properties": {"self": _STR}},
        # POST's 201 only: the pause that put it in `approve` mode (bot.autonomy).
        "paused": {"type": ["object", "null"], "properties": {"by": _STR, "reason": _STR, "until": _TIME}},
        # GET's only: what the agent reported once it ran (POST /v1/actions/{id}/result).
        "result": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Result"}]},
    },
}

RESULT: dict[str, Any] = {
    "type": "object", "required": ["result", "detail", "evidence", "at"],
    "properties": {"id": {"type": "integer"},
                   "result": {"type": "string", "enum": ["succeeded", "failed", "rolled_back"]},
                   "detail": _OPT_STR, "evidence": {"type": "array"}, "at": _TIME},
}
PAUSES: dict[str, Any] = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array"},
                                                                                 "pauses": {"type": "array"}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema}


ERROR: dict[str, Any] = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": _STR, "message": _STR,
        "fields": {"type": "array", "description": "each bad field and what was expected", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": _STR, "message": _STR}}}}}},
}
PAGE: dict[str, Any] = {
    "type": "object", "required": ["items", "next_cursor"],
    "properties": {
        "items": {"type": "array", "items": _ref("Action")},
        "actions": {"type": "array", "items": _ref("Action"), "description": "the same as items"},
        "next_cursor": {"type": ["string", "null"],
                        "description": "pass as `cursor` for the next (older) page; null on the last"},
    },
}
ERRORS = {
    "400": "Bad JSON or a bad field (`fields` names each one and what was expected)",
    "401": "Missing, unknown or revoked token",
    "403": "Forbidden by policy (reported to the service channel)",
    "409": "The same Idempotency-Key is still in flight",
    "413": "Body over 1 MiB",
    "415": "Content-Type is not JSON",
    "422": "Unknown service, an Idempotency-Key reused with another body, or a callback_url into a private, "
           "loopback, link-local or metadata address (allow it with COUNTERSIGN_CALLBACK_ALLOW)",
}


def document(base_url: str = "") -> dict[str, Any]:
    action_in = ActionIn.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = action_in.pop("$defs", {})
    errors = {code: _json(_ref("Error"), text) for code, text in ERRORS.items()}
    post = {
        "summary": "Submit a proposed or executed action",
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ActionIn")}}},
        "responses": {"201": _json(_ref("Action"), "Accepted and stored"), **errors},
    }
    listing = {
        "summary": "List actions, newest first",
        "parameters": [
            _query("status", {"type": "string", "enum": STATUSES}),
            _query("service", {"type": "string"}),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}),
            _query("cursor", {"type": "string"}),
        ],
        "responses": {"200": _json(_ref("ActionPage"), "A page, newest first"),
                      "400": errors["400"], "401": errors["401"]},
    }
    one: dict[str, Any] = {
        "summary": "One action, with its escalation state and decision",
        "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
        "responses": {"200": _json(_ref("Action"), "The action"), "401": errors["401"],
                      "404": _json(_ref("Error"), "No such action")},
    }
    health = {"status": {"type": "string", "enum": ["ok", "degraded", "down"]}, "checks": {"type": "object"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Countersign ingest API", "version": "1"},
        "servers": [{"url": base_url or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/actions": {"post": post, "get": listing},
            "/v1/actions/{id}": {"get": one},
            "/v1/actions/{id}/decision": {"get": {  # bot/api_decision.py: the long poll agents block on
                **one, "summary": "The action once decided, or after `wait` seconds (max 60) undecided",
                "parameters": [*one["parameters"], _query("wait", {"type": "number", "minimum": 0})],
                "responses": {**one["responses"], "400": errors["400"]}}},
            "/v1/actions/{id}/result": {"post": {
                "summary": "Report how the action went once it ran (stored once; the same body again: the same "
                           "answer; another body: 409)",
                "parameters": one["parameters"],
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("ResultIn")}}},
                "responses": {"200": _json(_ref("Result"), "The stored result"), **errors}}},
            "/v1/pauses": {"get": {"summary": "The pauses that hold now (their targets need approval)",
                                   "responses": {"200": _json(_ref("Pauses"), "Pauses in force"),
                                                 "401": errors["401"]}}},
            "/healthz": {"get": {"security": [], "summary": "Health", "responses": {
                "200": _json({"type": "object", "properties": health}, "Up (maybe degraded)"),
                "503": _json({"type": "object", "properties": health}, "The database is unreachable")}}},
            "/metrics": {"get": {"security": [], "summary": "Prometheus metrics", "responses": {
                "200": {"description": "Prometheus text format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**defs, "ActionIn": action_in, "Action": ACTION, "Decision": DECISION,
                        "ActionPage": PAGE, "Error": ERROR, "Result": RESULT, "Pauses": PAUSES,
                        "ResultIn": ResultIn.model_json_schema(ref_template="#/components/schemas/{model}")},
        },
    }
