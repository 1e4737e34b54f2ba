"""The action and service pages in a real Chromium: every section for a pending, a decided and a
timed-out action; the owner approves through the form and every card is updated; strangers' and
tampered links get 403; an override without a reason is refused visibly; agent text stays text and
no script runs; the service page charts a seeded history. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from selenium.common.exceptions import NoAlertPresentException

from bot.actions.decisions import respond
from bot.app import create_app
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from handlers.web import links
from storage.queries import actions as repo
from tests.browser.conftest import Browser
from tests.conftest import Running, make_settings, proposal, serve
from tests.conftest import test_policy as make_policy
from tests.slack_helpers import card_for, decided, until
from tests.web_helpers import link_posted, page_links

pytestmark = pytest.mark.browser

POLICY = """
leadership: {channel: C0LEADERS, users: [U0VP]}
admins: [U0ADMIN]
tiers:
  slow:
    escalation:
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 30m}
      - {notify: leadership, after: 1h}
    remind_every: 20m
    timeout: 2h
  quick:
    escalation: [{notify: owner, after: 0s}]
    timeout: 1s
services:
  checkout-api: {owner: U0OWNER, secondary: dana@example.com, channel: C0CHECKOUT, tier: slow}
  quick: {owner: owner@example.com, channel: C0QUICK, tier: quick}
rules:
  - {match: {kind: executed}, mode: acknowledge}
  - {mode: approve}
"""
SECTIONS = ("#h-facts", "#h-escalation", "#h-decision", "#h-responses", "#h-result", "#h-ledger")
XSS = ('<script>window.__xss = 1; alert("script")</script><img src=x onerror="window.__xss = 2; alert(2)"> '
       '*bold* _it_ <!channel> <@U0VP> `code`')


@pytest.fixture
def policy() -> Policy:
    return make_policy(POLICY)


def _shots(running: Running) -> bool:
    """Screenshots from one database's run (the pages are the same on both)."""
    return running.svc.db.dialect == "sqlite"


async def _owner_link(running: Running, fake_slack: FakeSlack, **over: object) -> tuple[int, str]:
    status, body = await running.submit(proposal(**over))
    assert status == 201, body
    [link] = page_links(await card_for(fake_slack, "U0OWNER", body["id"]))
    return int(body["id"]), link


async def _sections_shown(browser: Browser) -> None:
    for css in SECTIONS:
        assert await browser.count(css) == 1, css
    assert "verified" in await browser.text("#ledger-status")


async def test_every_section_for_pending_decided_and_timed_out(running: Running, fake_slack: FakeSlack,
                                                               browser: Browser) -> None:
    pending, link = await _owner_link(running, fake_slack, model={"provider": "anthropic", "name": "claude",
                                                                  "version": "2026-01"})
    await browser.open(link)
    await _sections_shown(browser)
    assert await browser.text("#status") == "pending"
    assert await browser.text("#model") == "anthropic claude 2026-01"
    assert "paged owner (Olive Owner (U0OWNER))" in await browser.text("#escalation")
    assert "page secondary" in await browser.text("#next") and "deadline" in await browser.text("#next")
    # The secondary was given by email, leadership is a channel: both read as who or what they are.
    assert "page secondary (Dana Secondary (U0DANA))" in await browser.text("#next")
    assert ("page leadership (leadership channel (C0LEADERS), mentioning Vic President (U0VP))"
            in await browser.text("#next"))
    assert "dana@example.com" not in await browser.text("#next")
    assert await browser.count("form.decide") == 2
    if _shots(running):
        await browser.screenshot("action-pending")
        await browser.screenshot("action-pending-phone", width=390)

    await running.submit(proposal(summary="Second try"))
    decided_id, decided_link = await _owner_link(running, fake_slack, summary="Scale down, decided")
    await respond(running.svc, decided_id, user_id="U0OWNER", user_name="olive", response="approve", via="button",
                  reason="load is low")
    await browser.open(decided_link)
    await _sections_shown(browser)
    assert await browser.text("#status") == "approved"
    assert "accountable: Olive Owner (U0OWNER)" in await browser.text("#decision")
    assert "load is low" in await browser.text("#decision")
    assert await browser.count("form.decide") == 0
    if _shots(running):
        await browser.screenshot("action-decided")

    status, body = await running.submit(proposal(service="quick", summary="Restart quick"))
    quick_link = await link_posted(fake_slack, "U0OWNER", body["id"])
    await until(lambda: _status_is(running, body["id"], "expired"))
    await browser.open(quick_link)
    await _sections_shown(browser)
    assert await browser.text("#status") == "expired"
    assert "timed out" in await browser.text("#escalation")
    assert "by default" in await browser.text("#decision")
    # Its owner was given by email: the timeline and the decision name the person, never the email.
    assert "paged owner (Olive Owner (U0OWNER))" in await browser.text("#escalation")
    assert "accountable: Olive Owner (U0OWNER)" in await browser.text("#decision")
    for css in ("#escalation", "#decision", "#ledger"):
        assert "owner@example.com" not in await browser.text(css), css
    if _shots(running):
        await browser.screenshot("action-timed-out")


async def _status_is(running: Running, action_id: int, status: str) -> bool:
    async with running.svc.db.read_session() as session:
        action = await repo.get(session, action_id)
    return action is not None and action.status == status


async def test_owner_approves_in_the_browser_and_every_card_is_updated(running: Running, fake_slack: FakeSlack,
                                                                       browser: Browser) -> None:
    action_id, link = await _owner_link(running, fake_slack)
    await card_for(fake_slack, "C0CHECKOUT", action_id)
    await browser.open(link)
    await browser.type("#reason-approve", "checked the CPU graph")
    await browser.click("#submit-approve")
    assert "Approved: recorded" in await browser.wait("#done")
    assert await browser.text("#status") == "approved"
    if _shots(running):
        await browser.screenshot("action-approved-in-browser")
    body = await decided(running, action_id)
    assert body["decision"]["via"] == "web" and body["decision"]["reason"] == "checked the CPU graph"
    async with running.svc.db.read_session() as session:
        copies = await repo.slack_messages(session, action_id)
    assert {c.channel for c in copies} >= {"U0OWNER", "C0CHECKOUT"}

    def updated() -> bool:
        return all(fake_slack.calls_to("chat.update", channel=c.channel, ts=c.ts) for c in copies)

    await fake_slack.wait_for(updated)
    for c in copies:
        card = fake_slack.calls_to("chat.update", channel=c.channel, ts=c.ts)[-1]
        assert "via web" in str(card.args["blocks"]) and "approve" not in [
            e.get("action_id") for b in card.args["blocks"] if b["type"] == "actions" for e in b["elements"]]


async def test_strangers_and_tampered_links_get_403(running: Running, fake_slack: FakeSlack,
                                                    browser: Browser) -> None:
    action_id, link = await _owner_link(running, fake_slack)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    tampered = f"{running.url}/a/{action_id}?{urlencode({**query, 'u': 'U0STRANGER'})}"
    await browser.open(tampered)
    assert "This link does not open the page" in await browser.text("h1")
    assert "altered" in await browser.text(".notice")
    if _shots(running):
        await browser.screenshot("link-refused")
    # A stranger's own (validly signed) link opens the page but offers no form...
    await browser.open(links.action_url(running.svc.settings, action_id, "U0STRANGER", running.svc.clock()))
    assert await browser.count("form.decide") == 0 and "not paged" in await browser.text("#not-paged")
    # ...and a link that was never signed for them is refused.
    await browser.open(f"{running.url}/a/{action_id}?u=U0STRANGER&e=9999999999&s=forged")
    assert "This link does not open the page" in await browser.text("h1")


async def test_override_without_reason_is_refused_visibly(running: Running, fake_slack: FakeSlack,
                                                          browser: Browser) -> None:
    action_id, link = await _owner_link(running, fake_slack)
    await browser.open(link)
    await browser.click("#submit-override")
    assert "An override needs a reason" in await browser.wait("#error")
    assert await browser.text("#status") == "pending"
    if _shots(running):
        await browser.screenshot("override-needs-reason")
    await browser.type("#reason-override", "traffic peak tonight")
    await browser.click("#submit-override")
    await browser.wait("#done")
    assert await browser.text("#status") == "denied"


async def test_agent_text_shows_as_text_and_no_script_runs(running: Running, fake_slack: FakeSlack,
                                                           browser: Browser) -> None:
    action_id, link = await _owner_link(running, fake_slack, summary=XSS, rationale=XSS,
                                        evidence=[{"label": XSS, "url": "https://evidence.example.com/x"}],
                                        model={"provider": XSS, "name": "m"})
    await browser.open(link)
    await asyncio.sleep(0.3)  # give any injected script (there should be none) time to run
    with pytest.raises(NoAlertPresentException):
        await browser.call(lambda: browser.driver.switch_to.alert.text)
    assert await browser.js("return window.__xss === undefined") is True
    assert await browser.text("#summary") == XSS
    assert await browser.text("#rationale") == XSS
    assert XSS in await browser.text("#evidence")
    assert await browser.count("#main script") == 0 and await browser.count("#main img") == 0
    logs = await browser.call(browser.driver.get_log, "browser")
    assert not [entry for entry in logs if "__xss" in entry.get("message", "")]
    if _shots(running):
        await browser.screenshot("hostile-agent-text")


@pytest.fixture
async def seeded(database_url: str, fake_slack: FakeSlack,
                 policy: Policy) -> AsyncIterator[tuple[Running, dict[str, int]]]:
    """An app on a fake clock with three days of history: decisions on days 0, 1 and 3, by two
    agents, one of them overridden once, and one action still pending."""
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0) - timedelta(days=3, hours=-1))
    async with serve(create_app(make_settings(database_url, fake_slack.url), policy=policy, clock=clock)) as run:
        second, _ = await run.add_agent("optimizer")
        plan = [(0, "approve", None, 90), (0, "override", None, 400), (1, "approve", second, 30),
                (3, "override", second, 3000)]
        start = clock.now
        for day, response, token, took in plan:
            clock.now = start + timedelta(days=day)
            status, body = await run.submit(proposal(), token=token)
            assert status == 201, body
            clock.advance(took)
            result = await respond(run.svc, body["id"], user_id="U0OWNER", user_name="olive", response=response,
                                   via="button", reason="not now" if response == "override" else None)
            assert result.accepted, result
        clock.now = start + timedelta(days=3, minutes=5)
        status, body = await run.submit(proposal(summary="Still waiting"))
        yield run, {"pending": body["id"]}


async def test_service_page_charts_a_seeded_history(seeded: tuple[Running, dict[str, int]], browser: Browser) -> None:
    running, ids = seeded
    await browser.open(links.service_url(running.svc.settings, "checkout-api", "U0OWNER", running.svc.clock()))
    assert await browser.text("h1") == "Service checkout-api"
    assert await browser.count("#chart-1 svg g.bar") == 3  # days 0, 1 and 3 had decisions
    assert await browser.count("#chart-1 svg rect") == 4  # day 0: approved + denied; days 1 and 3: one each
    assert await browser.count("#chart-2 svg g.bar") == 6  # the six time buckets
    assert await browser.count("#chart-3 svg g.bar") == 2  # two agents
    assert "50%" in await browser.text("#chart-3 svg")
    assert str(ids["pending"]) in await browser.text("#pending")
    requests = await browser.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert requests == []  # nothing fetched: no internet, no assets
    if _shots(running):
        await browser.screenshot("service-page")
