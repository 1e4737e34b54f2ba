"""Verifying the decisions Countersign POSTs to an agent's callback_url.

The same scheme as Slack's and Stripe's, and as the server's bot/callbacks.py:
  X-Countersign-Timestamp: <unix seconds>
  X-Countersign-Signature: v1=<hex HMAC-SHA256(callback secret, "<timestamp>.<body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Countersign-Timestamp"
SIGNATURE_HEADER = "X-Countersign-Signature"
DEFAULT_TOLERANCE = 300  # seconds: an older (or future) timestamp is a replay


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


def sign(secret: str, body: bytes | str, timestamp: int | str | None = None) -> dict[str, str]:
    """The two headers a signed body carries (useful to test your callback receiver)."""
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    mac = hmac.new(secret.encode(), ts.encode() + b"." + _bytes(body), hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"v1={mac}"}


def verify_signature(secret: str, body: bytes | str, timestamp: int | str | None, signature: str | None, *,
                     tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> bool:
    """True if `signature` is v1 over exactly these body bytes and the timestamp is fresh.

    Pass the raw request body, not re-serialized JSON: any byte changed breaks the signature.
    """
    if timestamp is None or not signature:
        return False
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, body, ts)[SIGNATURE_HEADER]
    return hmac.compare_digest(expected.encode(), _bytes(signature))


def verify_request(secret: str, headers: Mapping[str, str], body: bytes | str, *,
                   tolerance: int = DEFAULT_TOLERANCE, now: float | None = None) -> bool:
    """verify_signature with the timestamp and signature taken from the request's headers
    (any mapping of header names to values)."""
    timestamp, signature = _header(headers, TIMESTAMP_HEADER), _header(headers, SIGNATURE_HEADER)
    return verify_signature(secret, body, timestamp, signature, tolerance=tolerance, now=now)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict: compare names case-insensitively, as HTTP does
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return value
