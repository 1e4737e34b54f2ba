"""Countersign for agents: propose actions and wait for a named human's decision, report what you did.

    from countersign_client import CountersignClient, requires_approval, reports_action, verify_signature

Needs only aiohttp and the standard library (not the Countersign server's dependencies).
"""

from countersign_client.client import CountersignClient
from countersign_client.decorators import check_approved, current_action, reports_action, requires_approval
from countersign_client.errors import (
    ApiError,
    CountersignError,
    Denied,
    NotApproved,
    Overridden,
    Refused,
    ReportFailed,
    TimedOut,
    Unavailable,
)
from countersign_client.signature import sign, verify_request, verify_signature

__version__ = "0.1.0"
__all__ = [
    "ApiError",
    "CountersignClient",
    "CountersignError",
    "Denied",
    "NotApproved",
    "Overridden",
    "Refused",
    "ReportFailed",
    "TimedOut",
    "Unavailable",
    "check_approved",
    "current_action",
    "reports_action",
    "requires_approval",
    "sign",
    "verify_request",
    "verify_signature",
]
