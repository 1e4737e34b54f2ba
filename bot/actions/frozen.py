"""The frozen escalation snapshot of a submission, built and serialised once per distinct rule match.

Every submission that matches the same rule of the same loaded policy, for the same service, freezes
the same snapshot. Building it (`freeze`), turning it into its stored JSON (`to_json`) and putting
that JSON into the `action.submitted` ledger entry (storage.ledger.chain: `jsonable` plus RFC 8785)
were done for each submission: ~5 % of ingest CPU. Here they are done once per distinct match and
shared: the actions' `frozen` dicts are the same object (nobody changes a frozen dict in place; a
new one is assigned, see bot.escalation.snapshot.snapshot_of), and so is their ledger form.
"""

from __future__ import annotations

from typing import Any

from bot.escalation.snapshot import EscalationSnapshot, freeze
from bot.policy.rules import Policy, RuleMatch, evaluate
from storage.ledger.canonical import Canonical, canonical

_MAX = 256  # distinct (policy, service, rule, mode) in use at once: a handful
# (policy id, service, rule index, mode, violation) -> (the policy, the rule's dict, the snapshot)
_SNAPSHOTS: dict[tuple[int, str, int | None, str, bool], tuple[Policy, dict[str, Any], EscalationSnapshot]] = {}
# (policy id, service, action type, environment, kind) -> (the policy, its match)
_MATCHES: dict[tuple[int, str, str, str, str | None], tuple[Policy, RuleMatch]] = {}
# id(snapshot) -> (the snapshot, its stored JSON, that JSON in ledger form)
_STORED: dict[int, tuple[EscalationSnapshot, dict[str, Any], Canonical]] = {}


def rule_match(policy: Policy, service: str, action_type: str, environment: str, kind: str | None) -> RuleMatch:
    """`evaluate(...)` once per distinct question of a loaded policy: a match is immutable (frozen
    model; its rule dict is never changed in place, bot.policy.autonomy copies it), and evaluating
    built it anew with the rule's model_dump each time (~16 us a submission)."""
    key = (id(policy), service, action_type, environment, kind)
    hit = _MATCHES.get(key)
    if hit is not None and hit[0] is policy:  # an id is only reused once its policy is gone
        return hit[1]
    match = evaluate(policy, service, action_type, environment, kind)
    if len(_MATCHES) >= _MAX * 16:
        _MATCHES.clear()
    _MATCHES[key] = (policy, match)
    return match


def frozen_snapshot(policy: Policy, service: str, match: RuleMatch, *, violation: bool) -> EscalationSnapshot:
    """`freeze(policy, service, match, violation=...)`, shared by the submissions that match alike. The
    rule's dict is compared too: a grant or a pause in force (bot.policy.autonomy) changes it."""
    key = (id(policy), service, match.index, match.mode, violation)
    hit = _SNAPSHOTS.get(key)
    if hit is not None and hit[0] is policy and hit[1] == match.rule:
        return hit[2]
    snapshot = freeze(policy, service, match, violation=violation)
    if len(_SNAPSHOTS) >= _MAX:
        _SNAPSHOTS.clear()
    _SNAPSHOTS[key] = (policy, match.rule, snapshot)
    return snapshot


def _stored(snapshot: EscalationSnapshot) -> tuple[EscalationSnapshot, dict[str, Any], Canonical]:
    hit = _STORED.get(id(snapshot))
    if hit is None or hit[0] is not snapshot:  # an id is only reused once its snapshot is gone
        frozen = snapshot.to_json()
        if len(_STORED) >= _MAX:
            _STORED.clear()
        hit = _STORED[id(snapshot)] = (snapshot, frozen, canonical(frozen))
    return hit


def stored_json(snapshot: EscalationSnapshot) -> dict[str, Any]:
    """`snapshot.to_json()`, one dict per snapshot (`Action.frozen`; never changed in place)."""
    return _stored(snapshot)[1]


def ledger_json(snapshot: EscalationSnapshot, frozen: dict[str, Any]) -> Any:
    """What the `action.submitted` entry records as `frozen`: its ledger form, computed once, when
    `frozen` is this snapshot's shared dict; else `frozen` itself (the ledger converts it)."""
    _, shared, canonical = _stored(snapshot)
    return canonical if frozen is shared else frozen
