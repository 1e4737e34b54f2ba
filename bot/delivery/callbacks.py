"""Telling the agent: the signed decision POSTed to its callback_url (through the outbox).

Signed like Slack and Stripe sign theirs:
  X-Countersign-Timestamp: <unix seconds>
  X-Countersign-Signature: v1=<hex HMAC-SHA256(callback secret, "<timestamp>.<body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.contract.serialize import decision_json, iso
from storage.enqueue import enqueue
from storage.models import Action

GIVE_UP_AFTER_SECONDS = 24 * 3600


def callback_body(action: Action) -> dict[str, Any]:
    return {
        "type": "action.decided",
        "action_id": action.id,
        "external_id": action.external_id,
        "kind": action.kind,
        "status": action.status,
        "service": action.service,
        "action_type": action.action_type,
        "decision": decision_json(action),
        "sent_at": iso(action.decided_at),
    }


def queue_callback(session: AsyncSession, action: Action) -> None:
    """Queue the decision for the agent's callback_url, if it gave one (in the caller's transaction:
    no I/O, so the ingest writer queues an autonomous action's decision like its FYI)."""
    if not action.callback_url:
        return
    enqueue(
        session,
        target="callback",
        method="POST",
        payload={"url": action.callback_url, "agent_id": action.agent_id, "body": callback_body(action)},
        action_id=action.id,
        purpose="callback",
        channel_key=action.callback_url,
    )


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Countersign-Timestamp": ts, "X-Countersign-Signature": f"v1={mac}"}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def verify(secret: str, body: bytes, timestamp: str, signature: str, *, tolerance: int = 300,
           now: float | None = None) -> bool:
    """What an agent runs on receipt: a valid v1 signature over a fresh timestamp."""
    try:
        age = abs((now or time.time()) - int(timestamp))
    except ValueError:
        return False
    expected = sign(secret, body, int(timestamp))["X-Countersign-Signature"]
    return age <= tolerance and hmac.compare_digest(expected, signature)
