"""The policy file: validation with file:line: reason, first-match evaluation, and freezing into actions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.escalation.snapshot import EscalationSnapshot
from bot.policy.rules import FALLBACK_MODE, PolicyError, evaluate, load_policy, parse_policy
from storage.models import Action
from tests.conftest import Running, proposal
from tests.policies import FAST

GOOD = FAST


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yml")
    return caught.value.problems


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_spec_example_is_valid() -> None:
    policy = parse_policy(GOOD, "p.yml")
    assert set(policy.services) == {"checkout-api", "search", "batch"}
    assert [s.after for s in policy.tiers["tier1"].escalation or []] == [0, 2, 4]


@pytest.mark.parametrize(
    ("case", "edit", "needle", "reason"),
    [
        ("unknown top-level key", lambda t: t + "colour: blue\n", "colour: blue", "unknown key 'colour'"),
        (
            "unknown service key",
            lambda t: t.replace("    channel: C0SEARCH", "    chanel: C0SEARCH"),
            "chanel: C0SEARCH",
            "services.search.chanel: unknown key 'chanel'",
        ),
        (
            "unknown tier",
            lambda t: t.replace("    tier: tier2", "    tier: tier9"),
            "tier: tier9",
            "services.search.tier: unknown tier 'tier9'",
        ),
        (
            "unknown tier in a rule",
            lambda t: t.replace("{tier: tier1, environment", "{tier: gold, environment"),
            "tier: gold",
            "rules.1.match.tier: unknown tier 'gold'",
        ),
        (
            "bad duration",
            lambda t: t.replace("remind_every: 1s", "remind_every: soon"),
            "remind_every: soon",
            "tiers.tier1.remind_every: bad duration 'soon'",
        ),
        (
            "bad step duration",
            lambda t: t.replace("after: 2s}", "after: 2 weeks}"),
            "after: 2 weeks",
            "tiers.tier1.escalation.1.after: bad duration",
        ),
        (
            "service without owner",
            lambda t: t.replace("    owner: U0BATCH\n", ""),
            "  batch:",
            "services.batch.owner: missing required key 'owner'",
        ),
        ("unknown mode", lambda t: t.replace("mode: autonomous", "mode: yolo"), "mode: yolo", "rules.3.mode"),
        (
            "unknown level",
            lambda t: t.replace("{notify: secondary, after: 2s}", "{notify: cto, after: 2s}"),
            "notify: cto",
            "tiers.tier1.escalation.1.notify",
        ),
        (
            "bad on_timeout",
            lambda t: t.replace("on_timeout: deny", "on_timeout: shrug"),
            "on_timeout: shrug",
            "tiers.tier1.on_timeout",
        ),
    ],
)
def test_each_problem_has_file_line_and_reason(case: str, edit: object, needle: str, reason: str) -> None:
    text = edit(GOOD)  # type: ignore[operator]
    found = problems(text)
    assert any(p.startswith(f"p.yml:{line_of(text, needle)}: ") and reason in p for p in found), found


def test_bad_yaml_gives_the_line() -> None:
    text = GOOD.replace("    secondary: dana@example.com", "    secondary: [dana@example.com")
    (problem,) = problems(text)
    assert problem.startswith("p.yml:") and "not valid YAML" in problem
    assert int(problem.split(":")[1]) >= line_of(text, "[dana@example.com")


def test_several_problems_are_all_reported() -> None:
    text = GOOD.replace("    owner: U0BATCH\n", "").replace("remind_every: 1s", "remind_every: x")
    assert len(problems(text)) == 2


def test_not_a_mapping_and_a_missing_file() -> None:
    assert problems("- just\n- a list\n") == [
        "p.yml:1: the policy must be a mapping with `services` and `rules`"
    ]
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy("/nonexistent/policy.yml")


@pytest.mark.parametrize(
    ("service", "action_type", "environment", "mode", "index"),
    [
        ("checkout-api", "drop_database", "production", "forbidden", 0),  # first match wins over tier1/prod
        ("search", "delete_data", "staging", "forbidden", 0),
        ("checkout-api", "scale_down", "production", "approve", 1),
        ("checkout-api", "restart", "production", "approve", 1),  # rule 1 comes before the restart rule
        ("checkout-api", "restart", "staging", "acknowledge", 2),
        ("search", "rollback", "production", "acknowledge", 2),  # tier2: not rule 1
        ("search", "scale_down", "production", "autonomous", 3),  # the rule without match is the default
        ("batch", "anything", "dev", "autonomous", 3),
    ],
)
def test_first_matching_rule_wins(
    service: str, action_type: str, environment: str, mode: str, index: int
) -> None:
    match = evaluate(parse_policy(GOOD), service, action_type, environment)
    assert (match.mode, match.index) == (mode, index)


def test_without_a_matching_rule_a_human_must_approve() -> None:
    policy = parse_policy(
        GOOD.split("rules:")[0] + "rules:\n  - match: {service: search}\n    mode: autonomous\n"
    )
    match = evaluate(policy, "batch", "restart", "production")
    assert match.index is None and match.mode == FALLBACK_MODE == "approve"


def test_a_rule_can_match_on_kind_and_lists() -> None:
    policy = parse_policy(
        GOOD.replace(
            "rules:\n", "rules:\n  - match: {kind: executed, service: [batch, search]}\n    mode: approve\n"
        )
    )
    assert evaluate(policy, "batch", "x", "production", "executed").mode == "approve"
    assert evaluate(policy, "batch", "x", "production", "proposed").mode == "autonomous"


# --- the policy is frozen into the action ---------------------------------------------------------

EDITED = GOOD.replace(
    "    owner: U0OWNER\n    secondary: dana@example.com\n", "    owner: U0NEWOWNER\n"
).replace("remind_every: 1s", "remind_every: 1m")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC))


async def test_editing_the_policy_never_changes_an_action_in_flight(
    running: Running, fake_slack: FakeSlack, clock: FakeClock
) -> None:
    # The fake clock starts when the fixture is made; a slow app start-up would put the action's
    # created_at seconds behind the wall clock, and the jump below would then land past the
    # leadership page too (and the secondary's page would be collapsed away). Start from now.
    clock.now = max(clock.now, datetime.now(UTC))
    status, before = await running.submit(proposal())
    assert status == 201 and before["owner"] == "U0OWNER"
    async with running.svc.db.session() as session:
        frozen = dict((await session.get(Action, before["id"])).frozen)  # type: ignore[union-attr]
    snapshot = EscalationSnapshot.from_json(frozen)
    assert snapshot.secondary == "dana@example.com"
    assert [after for _, after in snapshot.steps] == [0, 2, 4]

    running.svc.policy = parse_policy(EDITED, "edited.yml")  # what a reload would do
    _, after = await running.get(f"/v1/actions/{before['id']}")
    assert after["owner"] == "U0OWNER" and after["secondary"] == "dana@example.com"
    async with running.svc.db.session() as session:
        assert (await session.get(Action, before["id"])).frozen == frozen  # type: ignore[union-attr]

    # The old chain keeps running: the secondary the new policy dropped is paged 2 s in. (Not behind the
    # wall clock: the outbox stamps its rows with real time, and a slow start must not leave them in the future.)
    clock.now = max(clock.now, datetime.now(UTC))
    clock.advance(2.5)
    page = await fake_slack.wait_for(
        lambda: fake_slack.posts("U0DANA") or fake_slack.posts("dana@example.com")
    )
    assert page
    # A new submission gets the edited policy.
    _, fresh = await running.submit(proposal())
    assert fresh["owner"] == "U0NEWOWNER" and fresh["secondary"] is None


def test_policy_files_in_the_repository_are_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    files = [p for p in root.glob("*.y*ml") if "policy" in p.name] + list(root.glob("examples/*policy*.y*ml"))
    for path in files:
        load_policy(path)


def test_rule_match_remembers_evaluate_per_loaded_policy() -> None:
    """Ingest asks bot.actions.frozen.rule_match, not evaluate: the same answers, and a reloaded
    policy (another object) is asked again, never answered from the old one."""
    from bot.actions.frozen import rule_match

    old = parse_policy(FAST)
    new = parse_policy(FAST.replace("  - mode: autonomous", "  - mode: approve"))
    questions = [(s, a, e, k) for s in ("checkout-api", "search", "batch", "nowhere")
                 for a in ("scale_down", "restart", "drop_database") for e in ("production", "staging")
                 for k in ("proposed", "executed", None)]
    for q in questions:
        assert rule_match(old, *q) == evaluate(old, *q) and rule_match(old, *q) is rule_match(old, *q)
        assert rule_match(new, *q) == evaluate(new, *q)
    assert rule_match(old, "batch", "cleanup", "staging", "proposed").mode == "autonomous"
    assert rule_match(new, "batch", "cleanup", "staging", "proposed").mode == "approve"
