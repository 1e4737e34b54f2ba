"""The action and service pages over HTTP: signed links from the cards, 403 for a missing, altered,
expired or someone else's link, forms that decide `via: "web"` with the buttons' rules, and agent
text that stays text. (The same in a real browser: tests/browser/.)"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

from sqlalchemy import text

from bot.demo.fakeslack import FakeSlack, Fault
from handlers.web import links
from tests.conftest import Running, proposal
from tests.integration.test_ledger import raw
from tests.slack_helpers import action_state, card_for, decided, responses
from tests.web_helpers import browser, csrf_of, page_links

HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)> *bold* <!channel> `code`'


async def _owner_link(running: Running, fake_slack: FakeSlack, **over: object) -> tuple[int, str]:
    status, body = await running.submit(proposal(**over))
    assert status == 201, body
    card = await card_for(fake_slack, "U0OWNER", body["id"])
    [link] = page_links(card)
    return int(body["id"]), link


async def test_owner_reads_the_page_and_approves_through_the_form(running: Running, fake_slack: FakeSlack) -> None:
    action_id, link = await _owner_link(running, fake_slack, model={"provider": "acme", "name": "m1",
                                                                     "version": "2026-01"})
    assert parse_qs(urlsplit(link).query)["u"] == ["U0OWNER"]
    async with browser() as b:
        async with b.get(link) as resp:
            page = await resp.text()
            assert resp.status == 200, page
            assert resp.headers["Referrer-Policy"] == "no-referrer"
        for part in ("Scale checkout-api from 12 to 8 pods", "acme m1 2026-01", "CPU under 20% for 3 hours",
                     "https://grafana.example.com/d/cpu", "paged <strong>owner</strong>", "Olive Owner (U0OWNER)",
                     "What comes next", "No result reported.", "✔ verified", 'id="form-approve"',
                     'id="form-override"', 'for="reason-override"'):
            assert part in page, part
        async with b.post(link, data={"csrf": csrf_of(page), "response": "approve", "reason": "fine"},
                          allow_redirects=False) as resp:
            assert resp.status == 303
            async with b.get(running.url + resp.headers["Location"]) as after:
                shown = await after.text()
    assert "Approved: recorded" in shown and "via web" in shown
    body = await decided(running, action_id)
    assert body["decision"]["via"] == "web" and body["decision"]["by"]["slack_user_id"] == "U0OWNER"
    await fake_slack.wait_for(lambda: fake_slack.calls_to("chat.update", channel="C0CHECKOUT"))


async def test_missing_altered_expired_and_foreign_links_get_403(running: Running, fake_slack: FakeSlack) -> None:
    action_id, link = await _owner_link(running, fake_slack)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    base = f"{running.url}/a/{action_id}"
    key = links.link_key(running.svc.settings)
    expired = links.sign(key, running.url, links.action_page(action_id), "U0OWNER",
                         running.svc.clock() - timedelta(days=8))
    stranger = links.sign(b"another key", running.url, links.action_page(action_id), "U0OWNER", running.svc.clock())
    cases = {
        "unsigned": base,
        "other user": f"{base}?{urlencode({**query, 'u': 'U0STRANGER'})}",
        "other action": f"{running.url}/a/{action_id + 1}?{urlencode(query)}",
        "altered expiry": f"{base}?{urlencode({**query, 'e': str(int(query['e']) + 3600)})}",
        "expired": expired,
        "wrong key": stranger,
    }
    async with browser() as b:
        for name, url in cases.items():
            async with b.get(url) as resp:
                text = await resp.text()
                assert resp.status == 403, name
                assert "This link does not open the page" in text, name
        async with b.post(base, data={"response": "approve"}) as resp:
            assert resp.status == 403
    assert (await action_state(running, action_id))["status"] == "pending"


async def test_a_strangers_link_shows_no_form_and_a_forged_post_is_refused(running: Running,
                                                                            fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal())
    await card_for(fake_slack, "C0CHECKOUT", body["id"])
    url = links.action_url(running.svc.settings, body["id"], "U0STRANGER", running.svc.clock())
    async with browser() as b:
        async with b.get(url) as resp:
            page = await resp.text()
        assert resp.status == 200 and "You are not paged" in page and "<form" not in page
        async with b.post(url, data={"csrf": "forged", "response": "approve"}) as resp:
            assert resp.status == 403 and "security token" in await resp.text()
    assert await responses(running, body["id"]) == []


async def test_channel_link_is_read_only_and_points_to_a_personal_link(running: Running,
                                                                       fake_slack: FakeSlack) -> None:
    status, body = await running.submit(proposal())
    card = await card_for(fake_slack, "C0CHECKOUT", body["id"])
    [link] = page_links(card)
    assert parse_qs(urlsplit(link).query)["u"] == ["C0CHECKOUT"]
    async with browser() as b:
        async with b.get(link) as resp:
            page = await resp.text()
        assert resp.status == 200 and 'id="confirm"' in page and "<form" not in page


async def test_override_without_reason_is_refused_visibly_and_recorded(running: Running,
                                                                       fake_slack: FakeSlack) -> None:
    action_id, link = await _owner_link(running, fake_slack)
    async with browser() as b:
        async with b.get(link) as resp:
            page = await resp.text()
        async with b.post(link, data={"csrf": csrf_of(page), "response": "override", "reason": "  "}) as resp:
            text = await resp.text()
        assert resp.status == 400 and "An override needs a reason" in text
    [attempt] = await responses(running, action_id)
    assert (attempt.accepted, attempt.refusal, attempt.via) == (False, "reason_required", "web")


async def test_agent_text_is_escaped(running: Running, fake_slack: FakeSlack) -> None:
    action_id, link = await _owner_link(running, fake_slack, summary=HOSTILE, rationale=HOSTILE,
                                        evidence=[{"label": HOSTILE, "url": "https://x.example/\"><script>alert(3)</script>"}])
    async with browser() as b, b.get(link) as resp:
        page = await resp.text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt; *bold*") >= 3


async def test_service_page_charts_and_pending(running: Running, fake_slack: FakeSlack) -> None:
    action_id, _ = await _owner_link(running, fake_slack)
    url = links.service_url(running.svc.settings, "checkout-api", "U0OWNER", running.svc.clock())
    async with browser() as b, b.get(url) as resp:
        page = await resp.text()
    assert resp.status == 200, page
    assert "Decisions per day" in page and f"<td>{action_id}</td>" in page and "https://" not in page.split(
        "</head>")[0]
    async with browser() as b, b.get(f"{running.url}/s/checkout-api") as resp:
        assert resp.status == 403


async def test_the_page_shows_the_result_the_agent_reported(running: Running, fake_slack: FakeSlack) -> None:
    """The result section reads what POST /v1/actions/{id}/result stored (and the page is not served
    from a copy cached before the result arrived)."""
    from tests.integration.test_autonomy import post_result

    action_id, link = await _owner_link(running, fake_slack)
    async with browser() as b:
        async with b.get(link) as resp:
            assert "No result reported." in await resp.text()
        async with b.post(link, data={"csrf": csrf_of(await (await b.get(link)).text()), "response": "approve",
                                      "reason": "fine"}, allow_redirects=False) as resp:
            assert resp.status == 303
        await decided(running, action_id)
        status, _ = await post_result(running, action_id, {"result": "rolled_back", "detail": "error rate rose again"})
        assert status in (200, 201)
        async with b.get(link) as resp:
            page = await resp.text()
    assert "No result reported." not in page
    assert "rolled_back" in page or "Rolled back" in page or "rolled back" in page
    assert "error rate rose again" in page


async def test_an_entry_edited_behind_countersigns_back_shows_as_broken(running: Running,
                                                                        fake_slack: FakeSlack) -> None:
    """The ledger section recomputes each entry's hash and its link to the entry before it: an edited
    entry is marked broken (and only it: the next one still links to its stored hash)."""
    action_id, link = await _owner_link(running, fake_slack)
    async with running.svc.db.session() as session:
        seqs = [seq for (seq,) in (await session.execute(
            text("SELECT seq FROM ledger WHERE action_id = :a ORDER BY seq"), {"a": action_id})).all()]
    assert len(seqs) >= 2, seqs
    await raw(running.svc.db, f"UPDATE ledger SET actor = 'U0MALLORY' WHERE seq = {seqs[0]}")
    async with browser() as b, b.get(link) as resp:
        page = await resp.text()
        assert resp.status == 200, page
    assert "✘ not verified" in page
    assert page.count("✘ broken") == 1 and page.count("✔ verified") == len(seqs) - 1


async def test_people_opening_a_page_at_once_load_it_once(running: Running, fake_slack: FakeSlack) -> None:
    """Concurrent first views of a page share one load: Slack is asked each name once, not once per
    viewer (and everyone gets the whole page)."""
    action_id, link = await _owner_link(running, fake_slack)
    before = len(fake_slack.calls_to("users.info"))
    async with browser() as b:
        async def view() -> str:
            async with b.get(link) as resp:
                assert resp.status == 200
                return await resp.text()
        pages_ = await asyncio.gather(*(view() for _ in range(8)))
    assert all("✔ verified" in page and 'id="form-approve"' in page for page in pages_)
    asked = [c.args.get("user") for c in fake_slack.calls_to("users.info")[before:]]
    assert asked, "the page looked up no name: this test shows nothing"
    assert len(asked) == len(set(asked)), asked


async def test_a_page_does_not_wait_on_a_slow_slack_for_names(running: Running, fake_slack: FakeSlack) -> None:
    """users.info hanging (Slack degraded) costs a reader at most the lookup wait (1 s): the page
    shows the ids it could not name; the name, once Slack answers, is cached for the next view."""
    action_id, link = await _owner_link(running, fake_slack)
    fake_slack.inject(Fault(method="users.info", delay=6.0, times=None))
    async with browser() as b:
        started = time.monotonic()
        async with b.get(link) as resp:
            page = await resp.text()
            assert resp.status == 200, page
        waited = time.monotonic() - started
    assert waited < 4.0, f"the page waited {waited:.1f} s on users.info"
    assert "U0OWNER" in page and "Olive Owner" not in page and 'id="form-approve"' in page


async def test_an_unsigned_done_parameter_shows_no_confirmation_of_a_decision_nobody_made(
        running: Running, fake_slack: FakeSlack) -> None:
    """`done=` (the form's redirect) is not signed: appended to a pending action's link, a channel's
    link or a stranger's, it must not show "Approved: recorded"; after a real decision it does, but
    only to the person who decided."""
    action_id, link = await _owner_link(running, fake_slack)
    channel = links.action_url(running.svc.settings, action_id, "C0CHECKOUT", running.svc.clock())
    stranger = links.action_url(running.svc.settings, action_id, "U0STRANGER", running.svc.clock())
    async with browser() as b:
        for url in (link, channel, stranger):
            async with b.get(url + "&done=approve") as resp:
                assert resp.status == 200 and 'id="done"' not in await resp.text(), url
        async with b.post(link, data={"csrf": csrf_of(await (await b.get(link)).text()), "response": "approve"},
                          allow_redirects=False) as resp:
            assert resp.status == 303
        async with b.get(running.url + resp.headers["Location"]) as after:
            assert "Approved: recorded" in await after.text()
        for url, response in ((link, "override"), (channel, "approve"), (stranger, "approve")):
            async with b.get(f"{url}&done={response}") as resp:
                assert 'id="done"' not in await resp.text(), (url, response)


async def test_a_form_post_no_browser_sends_is_a_4xx_not_a_500(running: Running, fake_slack: FakeSlack) -> None:
    """On a valid link, a body over the size cap is 413, one that is not UTF-8 or not valid multipart
    is 400: the sender's mistake, said as such (each was the 500 page), and nothing is recorded."""
    action_id, link = await _owner_link(running, fake_slack)
    form = "application/x-www-form-urlencoded"
    cases = [(b"x" * (3 * 1024 * 1024), form, 413), (b"\xff\xfe=\xff", form, 400),
             (b"--x\r\nbroken", "multipart/form-data; boundary=x", 400)]
    async with browser() as b:
        for body, content_type, expected in cases:
            async with b.post(link, data=body, headers={"Content-Type": content_type}) as resp:
                assert resp.status == expected, (content_type, await resp.text())
                assert "Something went wrong" not in await resp.text()
    assert await responses(running, action_id) == []
    assert (await action_state(running, action_id))["status"] == "pending"


async def test_the_page_names_the_rule_the_pause_and_whom_leadership_was_paged_with(
        running: Running, fake_slack: FakeSlack) -> None:
    """Everything the card shows: its "rule 2" (with what the rule says, and the pause that held),
    and a leadership page mentions the leadership users (the page named only the channel)."""
    from tests.integration.test_autonomy import slash

    await slash(running, fake_slack, "pause checkout-api 1h bad deploys")
    status, body = await running.submit(proposal(kind="executed"))  # needed approval: leadership at once
    assert status == 201 and body["policy_violation"], body
    await card_for(fake_slack, "C0LEADERS", body["id"])
    url = links.action_url(running.svc.settings, body["id"], "U0VP", running.svc.clock())
    async with browser() as b, b.get(url) as resp:
        page = await resp.text()
    assert "rule 2: tier tier1, environment production → approve" in page
    assert "paused by Olive Owner (U0OWNER): bad deploys" in page
    assert "(leadership channel (C0LEADERS), mentioning Vic President (U0VP))" in page


async def test_ai_actions_service_links_the_service_page_signed_for_who_asked(running: Running,
                                                                                fake_slack: FakeSlack) -> None:
    """`/ai-actions service NAME` carries the service page's link (it was reachable only from an
    action's page), signed for the person who asked: it opens; altered, it is refused."""
    from tests.integration.test_commands import slash

    answer = await slash(running, fake_slack, "service checkout-api", user="U0DANA")
    [link] = [url for url in page_links(answer) if urlsplit(url).path == "/s/checkout-api"]
    assert parse_qs(urlsplit(link).query)["u"] == ["U0DANA"]
    async with browser() as b:
        async with b.get(link) as resp:
            page = await resp.text()
            assert resp.status == 200 and "Decisions per day" in page and "Override rate per agent" in page
        async with b.get(link.replace("/s/checkout-api", "/s/search")) as resp:
            assert resp.status == 403


async def test_a_reminder_on_the_page_says_whom_it_reached(running: Running, fake_slack: FakeSlack) -> None:
    """A reminder names who was reminded, as a page names who was paged (it read "reminded owner")."""
    action_id, link = await _owner_link(running, fake_slack)  # FAST: the owner is reminded after 1 s
    async with browser() as b:
        for _ in range(50):
            async with b.get(link) as resp:
                page = await resp.text()
            if "reminded <strong>" in page:
                break
            await asyncio.sleep(0.1)
    assert "reminded <strong>owner</strong> (Olive Owner (U0OWNER))" in page


async def test_the_service_page_shows_the_pauses_and_grants_that_hold_now(running: Running,
                                                                          fake_slack: FakeSlack) -> None:
    """Where the line is drawn right now, beside the track record: a pause holding for the service (or
    for everything) and the grants in force for it, with who did it and until when."""
    from tests.integration.test_autonomy_now import grant_in_force
    from tests.integration.test_commands import dump, slash

    url = links.service_url(running.svc.settings, "checkout-api", "U0OWNER", running.svc.clock())
    async with browser() as b, b.get(url) as resp:
        assert "No pause holds and no grant is in force" in await resp.text()
    assert "Paused" in dump(await slash(running, fake_slack, "pause checkout-api 2h bad <b>deploys</b>"))
    await grant_in_force(running, "checkout-api")
    async with browser() as b, b.get(url) as resp:
        page = await resp.text()
    assert "No pause holds" not in page
    assert "<strong>Paused</strong> (checkout-api) by" in page and "until resumed" not in page
    assert "bad &lt;b&gt;deploys&lt;/b&gt;" in page  # the reason is text, never markup
    assert "remediator · restart · production runs in mode <strong>autonomous</strong>" in page
    other = links.service_url(running.svc.settings, "search", "U0OWNER", running.svc.clock())
    async with browser() as b, b.get(other) as resp:
        assert "No pause holds and no grant is in force" in await resp.text()  # neither is search's
