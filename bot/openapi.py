"""The OpenAPI document for the agents' API, generated from the same pydantic models the server uses."""

from __future__ import annotations

from typing import Any

from bot.schemas import ActionIn

STATUSES = ["pending", "approved", "denied", "acknowledged", "overridden", "expired", "recorded"]


def _error(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def document(base_url: str = "") -> dict[str, Any]:
    action_in = ActionIn.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = action_in.pop("$defs", {})
    errors = {code: _error(text) for code, text in {
        "400": "Bad JSON or a bad field (the message names it)", "401": "Missing, unknown or revoked token",
        "403": "Forbidden by policy", "409": "Same Idempotency-Key still in flight",
        "413": "Body over 1 MiB", "422": "Unknown service, or Idempotency-Key reused with another body"}.items()}
    action_ref = {"$ref": "#/components/schemas/Action"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Countersign ingest API", "version": "1"},
        "servers": [{"url": base_url or "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/actions": {
                "post": {
                    "summary": "Submit a proposed or executed action",
                    "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                                    "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
                    "requestBody": {"required": True,
                                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActionIn"}}}},
                    "responses": {"201": {"description": "Accepted and stored",
                                          "content": {"application/json": {"schema": action_ref}}}, **errors},
                },
                "get": {
                    "summary": "List actions, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": STATUSES}},
                        {"name": "service", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "A page", "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"items": {"type": "array", "items": action_ref},
                                                         "next_cursor": {"type": ["string", "null"]}}}}}},
                                  "400": errors["400"], "401": errors["401"]},
                },
            },
            "/v1/actions/{id}": {
                "get": {
                    "summary": "One action, with its escalation state and decision",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {"200": {"description": "The action",
                                          "content": {"application/json": {"schema": action_ref}}},
                                  "401": errors["401"], "404": _error("No such action")},
                }
            },
            "/healthz": {"get": {"security": [], "summary": "Health", "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"security": [], "summary": "Prometheus metrics",
                                 "responses": {"200": {"description": "text"}}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **defs,
                "ActionIn": action_in,
                "Action": {"type": "object", "required": ["id", "status", "mode", "owner"], "properties": {
                    "id": {"type": "integer"}, "status": {"type": "string", "enum": STATUSES},
                    "mode": {"type": "string", "enum": ["autonomous", "acknowledge", "approve"]},
                    "agent": {"type": "string"}, "owner": {"type": ["string", "null"]},
                    "escalation": {"type": "object"}, "decision": {"type": ["object", "null"]},
                    "links": {"type": "object"}}},
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
            },
        },
    }
