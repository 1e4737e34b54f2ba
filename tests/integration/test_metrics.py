"""/metrics moves with what happens: every decision (a click, a timeout, the policy at once) and
every refusal at ingest (forbidden, unknown service), each counted once: a repeat answered from
the stored response, or a response refused because the action was already decided, is not."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from bot.app import create_app
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import parse_policy
from tests.conftest import Running, make_settings, proposal, serve
from tests.integration.test_api import post
from tests.policies import FAST
from tests.slack_helpers import action_state, card_for, click, decided, until

DECISIONS = "countersign_decisions_total"
REFUSED = "countersign_actions_refused_total"


async def scrape(running: Running) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    async with running.http.get(f"{running.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def value(running: Running, name: str, **labels: str) -> float:
    return (await scrape(running)).get((name, frozenset(labels.items())), 0.0)


async def test_refusals_at_ingest_are_counted_once_each(running: Running) -> None:
    forbidden = proposal(action_type="delete_data")
    key = {"Idempotency-Key": "forbidden-1"}
    assert (await post(running, forbidden, headers=key))[0] == 403
    assert (await post(running, forbidden, headers=key))[0] == 403  # the stored answer: no new refusal
    assert (await post(running, proposal(service="new-api")))[0] == 422
    assert await value(running, REFUSED, reason="forbidden") == 1
    assert await value(running, REFUSED, reason="unknown_service") == 1
    assert (await post(running, proposal()))[0] == 201
    assert sum(v for (name, _), v in (await scrape(running)).items() if name == REFUSED) == 2


async def test_a_click_and_the_policy_are_decisions(running: Running, fake_slack: FakeSlack) -> None:
    status, out = await post(running, proposal(service="search"))
    assert status == 201 and out["mode"] == "autonomous"
    assert await value(running, DECISIONS, outcome="recorded", accountability="policy", via="policy") == 1

    status, out = await running.submit(proposal())
    assert status == 201 and out["decision"] is None
    card = await card_for(fake_slack, "U0OWNER", out["id"])
    await click(running, fake_slack, "U0OWNER", card, "Approve", channel="DU0OWNER")
    await decided(running, out["id"])
    approved = {"outcome": "approved", "accountability": "explicit", "via": "button"}
    assert await until(lambda: _equals(running, approved, 1))
    await click(running, fake_slack, "U0OWNER", card, "Approve", channel="DU0OWNER", trigger_id="again")
    assert await value(running, DECISIONS, **approved) == 1  # already decided: refused, not counted


async def _equals(running: Running, labels: dict[str, str], expected: float) -> bool:
    return await value(running, DECISIONS, **labels) == expected


async def test_a_timeout_is_a_default_decision(database_url: str, fake_slack: FakeSlack) -> None:
    # Times out after 1 s, before the secondary's page (2 s).
    policy = parse_policy(FAST.replace("timeout: 6s", "timeout: 1s"), "quick-timeout.yml")
    async with serve(create_app(make_settings(database_url, fake_slack.url), policy=policy)) as running:
        status, out = await post(running, proposal())
        assert status == 201 and out["mode"] == "approve"

        async def timed_out() -> bool:
            decision = (await action_state(running, out["id"]))["decision"]
            return decision is not None and decision["via"] == "timeout"

        await until(timed_out)
        denied = {"outcome": "denied", "accountability": "default", "via": "timeout"}
        assert await until(lambda: _equals(running, denied, 1))
        assert sum(v for (name, _), v in (await scrape(running)).items() if name == DECISIONS) == 1
