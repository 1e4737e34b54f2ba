"""Block Kit for `/ai-actions` answers (and the pieces App Home and the digest share): pure functions.

Blocks, escaping and limits come from handlers.blocks.kit; a pending item carries its card's own
buttons (handlers.blocks.card.decision_buttons), so one can decide from the answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bot.escalation.snapshot import freeze, snapshot_of
from bot.policy.durations import spoken
from bot.policy.rules import Policy, evaluate
from bot.reports.figures import Rates, Stats, counts_text
from handlers.blocks.card import DECIDED, decision_buttons
from handlers.blocks.kit import (
    MAX_BLOCKS,
    Block,
    Message,
    clip,
    context,
    divider,
    escape,
    header,
    link,
    mention,
    message,
    section,
    slack_date,
)
from handlers.blocks.notices import Private
from storage.models import Action

STATUS_EMOJI = {**{k: v[0] for k, v in DECIDED.items()}, "pending": ":hourglass_flowing_sand:"}

HELP = """*`/ai-actions`*: what the AI did, what waits on you, how it is doing.
• `recent [N]`: the last N actions (10 by default, at most 20)
• `pending`: everything waiting for a human, with its buttons
• `mine`: what waits on you, and what you decided
• `show ID`: one action's whole record: the AI's rationale, every page, response and refusal, \
callbacks, and who is accountable and how
• `service NAME`: a service's recent actions, owner and autonomy modes
• `who-owns SERVICE`: its owner, secondary, channel and escalation chain
• `stats [WINDOW]` (e.g. `24h`, `7d`, `30d`; 7 days if left out): counts by mode and outcome, \
approve/override rates, time to response, default accountability
• `approve ID [reason]`, `override ID REASON`, `ack ID`: decide, with the buttons' rules (who may, \
first response wins)
• `trust [AGENT|SERVICE]`: track record over 30 days, and suggested promotions/demotions
• `pause TARGET [DURATION] REASON` (TARGET: a service, `agent:NAME` or `all`), `resume TARGET`, `pauses`
• `share …`: post the answer to the channel instead of only to you (e.g. `/ai-actions share stats 7d`)"""


def pct(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "-"


FULL_RECORD = "Full record of any item, with its whole timeline: `/ai-actions show ID`"


def action_line(action: Action, agent: str | None = None, people: Mapping[str, str] | None = None) -> str:
    """`people`: emails -> the user ids they resolved to (`people_in` lists what to resolve), so
    Slack shows a name where the policy gave an email."""
    emoji = STATUS_EMOJI.get(action.status, ":grey_question:")
    who = f" · by {escape(agent)}" if agent else ""
    line = (f"{emoji} *#{action.id}* `{escape(action.status)}` · *{escape(action.service)}* "
            f"`{escape(action.action_type)}`{who} · {slack_date(action.created_at)}\n"
            f"{escape(clip(action.summary, 300))}")
    if action.accountability:
        line += "\n" + decision_line(action, people)
    elif action.status == "pending":
        line += f"\n_waiting on {escape(action.level or 'owner')}: {mention(waiting_who(action), people)}_"
    return line


def waiting_who(action: Action) -> str | None:
    return snapshot_of(action).target(action.level or "owner") or action.owner


def people_in(actions: Iterable[Action]) -> list[str]:
    """Who these actions' lines name (`action_line`: the accountable person, or whom a pending one
    waits on), to resolve the emails among them before rendering."""
    named = (a.decided_by if a.accountability else waiting_who(a) if a.status == "pending" else None
             for a in actions)
    return [s for s in named if s]


def decision_line(action: Action, people: Mapping[str, str] | None = None) -> str:
    how = {"explicit": "", "default": " by default (nobody answered)", "policy": " by policy"}.get(
        action.accountability or "", "")
    at = slack_date(action.decided_at) if action.decided_at else "-"
    reason = f" — “{escape(clip(action.decision_reason, 200))}”" if action.decision_reason else ""
    return (f"_{escape(action.outcome or action.status)}{how}: accountable {mention(action.decided_by, people)} "
            f"({escape(action.decision_level or '-')}, via {escape(action.decision_via or '-')}) · {at}_"
            + reason)


def action_items(rows: Iterable[tuple[Action, str | None]], *, with_buttons: bool = True,
                 people: Mapping[str, str] | None = None) -> list[Block]:
    """One section per item, and a pending item's buttons under it."""
    out: list[Block] = []
    for action, agent in rows:
        out.append(section(action_line(action, agent, people)))
        block = decision_buttons(action, per_action=True) if with_buttons else None
        if block is not None:
            out.append(block)
    return out


def action_list(title: str, rows: Sequence[tuple[Action, str | None]], *, empty: str,
                footer: str = "", people: Mapping[str, str] | None = None) -> Message:
    blocks: list[Block] = [header(title)]
    blocks += action_items(rows, people=people) if rows else [section(empty)]
    blocks.append(context(f"{footer} · {FULL_RECORD}" if footer else FULL_RECORD))
    return message(f"{title}: {len(rows)} item(s)" if rows else f"{title}: {empty}", blocks)


def help_message(note: str = "") -> Message:
    """The help; with a `note` (what was wrong with the command) it answers a mistake, so it is
    `Private`: the asker alone sees it, even after `share`. The bare help may be shared."""
    answer = message("/ai-actions help", [*([section(note)] if note else []), section(HELP)])
    return Private(answer) if note else answer


def unknown_command(word: str) -> Message:
    return help_message(f"I don't know `{escape(word)}`. Here is what I can do:")


def no_action(ref: str) -> Private:
    """A mistake (no action has that id): answered to the asker alone, even after `share`."""
    return Private(message(f"No action {escape(ref)}", [section(f"There is no action {escape(ref)}.")]))


def shareable(answer: Message) -> bool:
    """Whether `share` may post this answer to the channel: not a refusal or a mistake (`Private`)."""
    return not isinstance(answer, Private)


def shared(answer: Message, user_id: str, command: str) -> Message:
    """An answer posted to the channel, signed by who shared it."""
    blocks = [*answer["blocks"][: MAX_BLOCKS - 1], context(f"Shared by {mention(user_id)} with `{command}`")]
    return {**answer, "blocks": blocks}


def rates_line(name: str, rates: Rates) -> str:
    decided = rates.decided
    return (f"*{escape(name)}*: {rates.total} · approved {pct(rates.approved, decided)} · "
            f"overridden {pct(rates.overridden, decided)} · no answer {pct(rates.defaulted, decided)}"
            + (f" · {rates.pending} pending" if rates.pending else ""))


def stats_blocks(stats: Stats, *, top: int = 10, people: Mapping[str, str] | None = None) -> list[Block]:
    """Counts by mode and outcome, rates per agent and service, time to response, defaults."""
    blocks: list[Block] = [
        section(f"*{stats.total} actions* submitted {slack_date(stats.since)} – {slack_date(stats.until)}\n"
                f"*By mode:* {counts_text(stats.by_mode, escape)}\n"
                f"*By outcome:* {counts_text(stats.by_outcome, escape)}\n"
                f"*Median time to response:* {spoken(stats.median_response_seconds)} "
                f"(over {stats.responded} explicit responses)\n"
                f"*Default accountability* (nobody answered in time): {stats.defaulted}"),
    ]
    for title, table in (("Per agent", stats.per_agent), ("Per service", stats.per_service)):
        ranked = sorted(table.items(), key=lambda kv: -kv[1].total)
        lines = [rates_line(name, rates) for name, rates in ranked[:top]]
        if len(ranked) > top:
            lines.append(f"…and {len(ranked) - top} more")
        blocks.append(section(f"*{title}*\n" + ("\n".join(lines) or "none")))
    if stats.recent_defaults:
        lines = [f"• *#{a.id}* {escape(a.service)}: {escape(clip(a.summary, 120))} — "
                 f"{mention(a.decided_by, people)} ({escape(a.decision_level or '-')})"
                 for a in stats.recent_defaults]
        more = stats.defaulted - len(stats.recent_defaults)
        blocks.append(section("*Default accountability, latest*\n" + "\n".join(lines)
                              + (f"\n…and {more} more" if more > 0 else "")))
    return blocks


def stats_message(stats: Stats, label: str, people: Mapping[str, str] | None = None) -> Message:
    return message(f"AI actions, {label}: {stats.total} actions",
                   [header(f"AI actions, {label}"), *stats_blocks(stats, people=people)])


# --- services: who owns them, and how much the AI may do alone --------------------------------------


def service_modes(policy: Policy, service: str, environment: str = "production") -> dict[str, list[str]]:
    """mode -> the action types that fall under it in `environment` ('*': every other type)."""
    named: list[str] = []
    for rule in policy.rules:
        want = rule.match.action_type if rule.match else None
        named += [t for t in ([want] if isinstance(want, str) else want or []) if t not in named]
    modes: dict[str, list[str]] = {}
    for action_type in [*named, "*"]:
        modes.setdefault(evaluate(policy, service, action_type, environment).mode, []).append(action_type)
    return modes


def _type(action_type: str) -> str:
    """An action type in code style; `*` is service_modes' own word for every other type."""
    return "`*`" if action_type == "*" else f"`{escape(action_type)}`"


def modes_text(policy: Policy, service: str) -> str:
    parts = []
    for env in ("production", "staging"):
        modes = service_modes(policy, service, env)
        parts.append(f"{env}: " + "; ".join(f"*{m}* " + ", ".join(_type(t) for t in types)
                                              for m, types in modes.items()))
    return "\n".join(parts)


def owner_people(policy: Policy, service: str) -> list[str | None]:
    """Whom `owner_text` names (the owner and the secondary): the emails among them to resolve first."""
    config = policy.services[service]
    return [config.owner, config.secondary]


def owner_text(policy: Policy, service: str, people: Mapping[str, str] | None = None) -> str:
    svc = policy.services[service]
    snapshot = freeze(policy, service, evaluate(policy, service, "*", "production"))
    chain = " → ".join(f"{level} at {spoken(after)}" for level, after in snapshot.steps)
    return (f"*{escape(service)}*: owner {mention(svc.owner, people)}, secondary {mention(svc.secondary, people)}, "
            f"channel {mention(svc.channel)}, tier `{escape(svc.tier or '-')}`\n"
            f"*Escalation:* {chain}; remind every {spoken(snapshot.remind_every)}, timeout "
            f"{spoken(snapshot.timeout)}, then {escape(snapshot.on_timeout)}\n"
            f"*Autonomy:*\n{modes_text(policy, service)}")


def unknown_service(policy: Policy, name: str) -> Private:
    """A mistake (no such service in the policy): answered to the asker alone, even after `share`."""
    known = ", ".join(f"`{escape(s)}`" for s in sorted(policy.services)[:30])
    return Private(message(f"No service {escape(name)}", [
        section(f"There is no service `{escape(name)}` in the policy. Known: {known}")]))


def who_owns_message(policy: Policy, service: str, people: Mapping[str, str] | None = None) -> Message:
    return message(f"Who owns {service}", [section(owner_text(policy, service, people))])


def service_message(policy: Policy, service: str, rows: Sequence[tuple[Action, str | None]],
                    people: Mapping[str, str] | None = None, page_url: str | None = None,
                    in_force: str = "") -> Message:
    """`page_url`: the service's web page (its charted track record), signed for who asked;
    `in_force`: what changes its modes now (handlers.blocks.autonomy.in_force_text)."""
    blocks: list[Block] = [header(f"Service {service}"), section(owner_text(policy, service, people))]
    if in_force:
        blocks.append(section(f"*Now:*\n{in_force}"))
    blocks.append(divider())
    blocks += action_items(rows, people=people) if rows else [section("No actions yet.")]
    blocks.append(context(FULL_RECORD + (f" · {link(page_url, 'track record: open the service page')}"
                                         if page_url else "")))
    return message(f"Service {service}: {len(rows)} recent action(s)", blocks)


def mine_message(waiting: Sequence[tuple[Action, str | None]],
                 decided: Sequence[tuple[Action, str | None]], people: Mapping[str, str] | None = None) -> Message:
    blocks: list[Block] = [header(f"Waiting on you ({len(waiting)})")]
    blocks += action_items(waiting, people=people) if waiting else [section("Nothing waits on you. :tada:")]
    blocks += [divider(), header("Decided by you")]
    blocks += action_items(decided, with_buttons=False, people=people) if decided else [section("No decisions yet.")]
    blocks.append(context(FULL_RECORD))
    return message(f"{len(waiting)} action(s) wait on you", blocks)
