"""When a decided suggestion is suggested again. A grant holds back its own move only while it is in
force: once it expired (here `grant_for: 1d`, shorter than `demote.window: 7d`) the promotion is back at
once while the record still qualifies; after a revocation, or for a further step while the grant
holds, only figures gathered since then count. A dismissal stays quiet for `demote.window`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.actions.decisions import respond
from bot.autonomy import grants, trust
from bot.clock import FakeClock
from bot.demo.fakeslack import FakeSlack
from bot.policy.autonomy import Suggestion
from bot.policy.rules import Policy
from tests.conftest import Running, proposal
from tests.conftest import test_policy as make_policy
from tests.integration.test_autonomy import slash
from tests.policies import AUTONOMY

DAY = 86400
PROMOTE = ("promote", "approve", "acknowledge")  # checkout-api · scale_down is `approve` by the file's rules


@pytest.fixture
def policy() -> Policy:
    return make_policy(AUTONOMY)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1))


async def decided(running: Running, n: int) -> None:
    """`n` new scale_down proposals, each approved by the owner."""
    for i in range(n):
        status, a = await running.submit(proposal(summary=f"scale {i}"))
        assert status == 201
        assert (await respond(running.svc, a["id"], user_id="U0OWNER", user_name="olive", response="approve",
                              via="slash")).accepted


async def standing(running: Running, clock: FakeClock) -> list[tuple[str, str, str]]:
    async with running.svc.db.read_session() as session:
        found = await trust.current_suggestions(running.svc, session, clock())
    return [(s.kind, s.mode_now, s.mode_suggested) for s in found]


async def the_promotion(running: Running, clock: FakeClock) -> Suggestion:
    async with running.svc.db.read_session() as session:
        [s] = await trust.current_suggestions(running.svc, session, clock())
    assert (s.kind, s.mode_now, s.mode_suggested) == PROMOTE
    return s


async def test_a_promotion_is_suggested_again_at_once_when_its_shorter_grant_expired(
        running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    """It stayed hidden for `demote.window` (7 d) though the grant (1 d) had ended."""
    await decided(running, 3)
    row = await grants.decide(running.svc, "U0VP", (await the_promotion(running, clock)).token(), "granted")
    clock.advance(DAY / 2)
    assert await standing(running, clock) == []  # in force: not suggested again
    _, during = await running.submit(proposal(summary="during the grant"))
    assert during["mode"] == "acknowledge"
    clock.advance(DAY / 2 + 1)  # the grant ended 1 s ago; the 3 approvals are still in the 30 d window
    _, after = await running.submit(proposal(summary="after the grant"))
    assert after["mode"] == "approve"
    assert await standing(running, clock) == [PROMOTE]
    view = json.dumps(await slash(running, fake_slack, "trust checkout-api", user="U0VP"), ensure_ascii=False)
    assert "*approve* → *acknowledge*" in view and "autonomy_grant" in view
    again = await grants.decide(running.svc, "U0VP", (await the_promotion(running, clock)).token(), "granted")
    assert again.id != row.id and again.mode == "acknowledge"


async def test_a_revoked_promotion_comes_back_only_with_evidence_gathered_since_the_revocation(
        running: Running, clock: FakeClock) -> None:
    await decided(running, 3)
    row = await grants.decide(running.svc, "U0VP", (await the_promotion(running, clock)).token(), "granted")
    assert row.id is not None
    clock.advance(3600)
    await grants.revoke(running.svc, row.id, "U0ADMIN")
    assert await standing(running, clock) == []  # the same figures a leader just judged insufficient
    clock.advance(DAY)  # past the grant's own end: still the figures from before the revocation
    assert await standing(running, clock) == []
    await decided(running, 2)
    assert await standing(running, clock) == []  # min_decisions is 3
    await decided(running, 1)
    assert await standing(running, clock) == [PROMOTE]


async def test_a_further_step_while_a_grant_holds_needs_evidence_gathered_under_it(
        running: Running, clock: FakeClock) -> None:
    """The approvals that justified approve → acknowledge do not also justify acknowledge → autonomous."""
    await decided(running, 3)
    await grants.decide(running.svc, "U0VP", (await the_promotion(running, clock)).token(), "granted")
    assert await standing(running, clock) == []
    clock.advance(60)
    await decided(running, 2)
    assert await standing(running, clock) == []  # min_decisions is 3
    await decided(running, 1)
    assert await standing(running, clock) == [("promote", "acknowledge", "autonomous")]


async def test_the_granted_move_is_not_suggested_again_while_a_pause_hides_it(
        running: Running, fake_slack: FakeSlack, clock: FakeClock) -> None:
    """A pause makes the mode `approve` for a while: approve → acknowledge is what the grant already
    gives, so it is not suggested again. Suggestions start from the grant's mode (a pause is a brake,
    not a mode), so the next step is, once the figures gathered under the grant support it."""
    await decided(running, 3)
    await grants.decide(running.svc, "U0VP", (await the_promotion(running, clock)).token(), "granted")
    assert "Paused" in json.dumps(await slash(running, fake_slack, "pause checkout-api 2h bad deploys",
                                              user="U0VP"))
    clock.advance(60)
    await decided(running, 2)
    assert await standing(running, clock) == []
    await decided(running, 1)
    assert await standing(running, clock) == [("promote", "acknowledge", "autonomous")]


async def test_a_dismissed_promotion_stays_quiet_for_the_demote_window(running: Running, clock: FakeClock) -> None:
    await decided(running, 3)
    await grants.decide(running.svc, "U0VP", (await the_promotion(running, clock)).token(), "dismissed")
    clock.advance(7 * DAY - 60)
    assert await standing(running, clock) == []
    clock.advance(61)
    assert await standing(running, clock) == [PROMOTE]
