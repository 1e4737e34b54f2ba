"""The responsibility record of one action: who is accountable and how, beside the AI's reasons,
with the whole timeline. The same record backs the API, `countersign actions show` and
`/ai-actions show`."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.actions.serialize import action_json
from bot.contract.serialize import decider_spec, iso, with_person
from bot.delivery.directory import known_people
from storage.queries import actions as repo
from storage.queries import paging


async def action_record(session: AsyncSession, action_id: int) -> dict[str, Any] | None:
    found = await repo.get_with_agent(session, action_id)
    if found is None:
        return None
    action, agent = found
    view = (await paging.unreachable_view(session, [action_id])).get(action_id)
    record = action_json(action, agent.name, paging=view)
    # decision.by as the API gives it, from the cache alone (no Slack: the CLI may have none)
    people = await known_people(session, [decider_spec(record["decision"])])
    record["decision"] = with_person(record["decision"], people)
    record["timeline"] = [
        {"seq": e.seq, "at": iso(e.at), "event": e.event, "actor": e.actor, "data": e.data, "hash": e.hash}
        for e in await repo.ledger_entries(session, action_id)
    ]
    record["responses"] = [
        {"at": iso(r.created_at), "by": r.slack_user_id, "name": r.user_name, "response": r.response,
         "via": r.via, "accepted": r.accepted, "refusal": r.refusal, "reason": r.reason, "level": r.level}
        for r in await repo.responses(session, action_id)
    ]
    record["responsibility"] = responsibility(record)
    return record


def responsibility(record: dict[str, Any]) -> dict[str, Any]:
    """Who is accountable and how, beside what the AI said: one section built from the same
    `decision` that GET /v1/actions/{id} returns, so every surface says the same."""
    d = record.get("decision")
    timeline = record.get("timeline") or []
    return {
        "accountable": d["by"] if d else None,
        "accountability": d["accountability"] if d else None,  # explicit | default | policy
        "outcome": d["outcome"] if d else None,
        "level": d["level"] if d else None,
        "via": d["via"] if d else None,
        "at": d["at"] if d else None,
        "reason": d["reason"] if d else None,
        # Not decided yet: where it waits (the level paged so far) and who owns the service.
        "waiting_at": None if d else (record.get("escalation") or {}).get("level"),
        "owner": record.get("owner"),
        "ai": {
            "agent": record.get("agent"),
            "rationale": record.get("rationale"),
            "confidence": record.get("confidence"),
            "evidence": record.get("evidence") or [],
            "model": record.get("model"),
            "policy_violation": record.get("policy_violation"),
        },
        # The ledger entries behind this record: `countersign audit verify` proves them unchanged.
        "ledger": {"entries": len(timeline), "first_seq": timeline[0]["seq"] if timeline else None,
                   "last_seq": timeline[-1]["seq"] if timeline else None,
                   "last_hash": timeline[-1]["hash"] if timeline else None},
    }


def format_record(record: dict[str, Any]) -> str:
    d = record.get("decision")
    lines = [
        f"Action {record['id']}: {record['summary']}",
        f"  {record['kind']} {record['action_type']} on {record['service']} ({record['environment']}) "
        f"by agent {record['agent']}",
        f"  status {record['status']}, mode {record['mode']}"
        + (", POLICY VIOLATION" if record["policy_violation"] else ""),
        f"  rationale: {record['rationale']}",
        f"  confidence: {record['confidence'] if record['confidence'] is not None else '-'}",
    ]
    for ev in record.get("evidence") or []:
        lines.append(f"  evidence: {ev['label']} <{ev['url']}>")
    if record.get("model"):
        m = record["model"]
        lines.append(f"  model: {m.get('provider')}/{m.get('name')} {m.get('version') or ''}".rstrip())
    level = record["escalation"]["level"]
    lines.append(f"  owner: {record['owner']}; " + (  # an autonomous action never escalates
        f"escalation level {level}, next step {record['escalation']['next_at'] or '-'}" if level
        else "not escalated"))
    if record["escalation"].get("unreachable"):
        lines.append(f"  UNREACHABLE: no level could be paged ({', '.join(record['escalation']['failed_levels'])}"
                     " failed for good); fix Slack, then `countersign deliveries retry --all`")
    if d:
        lines.append(f"  ACCOUNTABLE: {d['by']['name'] or ''} {d['by']['slack_user_id']} — {d['outcome']}, "
                     f"{d['accountability']}, level {d['level']}, via {d['via']}, at {d['at']}")
        if d.get("reason"):
            lines.append(f"  reason: {d['reason']}")
    else:
        lines.append("  ACCOUNTABLE: nobody yet (pending)")
    ledger = (record.get("responsibility") or {}).get("ledger") or {}
    if ledger.get("entries"):
        lines.append(f"  ledger: {ledger['entries']} entries, #{ledger['first_seq']}..#{ledger['last_seq']} "
                     "(check with `countersign audit verify`)")
    lines.append("  timeline:")
    for e in record.get("timeline", []):
        lines.append(f"    #{e['seq']} {e['at']} {e['event']} {e['actor'] or ''}".rstrip() + _detail(e))
    return "\n".join(lines)


def _detail(entry: dict[str, Any]) -> str:
    """What a timeline line adds from its data: whom a page or reminder went to, and why a step
    was skipped or a page failed (the actor of these is countersign itself, so it is left out)."""
    data = entry.get("data") or {}
    if not isinstance(data, dict):
        return ""
    parts = [f"{key} {data[key]}" for key in ("level", "target", "reason") if data.get(key)]
    return f" ({', '.join(parts)})" if parts and entry["event"].startswith(("escalation.", "page.")) else ""
