"""What changes a service's modes now (a pause holding there, its grants in force), shown where a
team lead looks: `/ai-actions service NAME` (the service page: tests/integration/test_web_pages.py)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from bot.autonomy.pauses import invalidate_cache
from bot.demo.fakeslack import FakeSlack
from bot.policy.rules import Policy
from storage.models import AutonomyGrant
from tests.conftest import Running
from tests.conftest import test_policy as make_policy
from tests.integration.test_autonomy import slash
from tests.policies import AUTONOMY


@pytest.fixture
def policy() -> Policy:
    return make_policy(AUTONOMY)


async def grant_in_force(running: Running, service: str) -> None:
    """remediator · restart · production promoted to autonomous on `service` for a day, by U0VP, as a
    granted suggestion stores it; the running app sees it at once (as `grants.decide` makes it)."""
    now = running.svc.clock()
    async with running.svc.db.session() as session:
        session.add(AutonomyGrant(agent="remediator", service=service, action_type="restart",
                                  environment="production", kind="promote", decision="granted", mode="autonomous",
                                  previous_mode="acknowledge", by="U0VP", at=now, until=now + timedelta(days=1)))
        await session.commit()
    invalidate_cache(running.svc)


async def test_ai_actions_service_says_what_changes_its_modes_now(
        running: Running, fake_slack: FakeSlack) -> None:
    """A team lead asking about a service sees the pause holding for it and its grants in force, not
    only the file's rules (which a pause overrides)."""
    quiet = json.dumps(await slash(running, fake_slack, "service search"), ensure_ascii=False)
    assert "*Now:*" not in quiet and "Paused" not in quiet
    assert "Paused" in json.dumps(await slash(running, fake_slack, "pause search 2h bad deploys", user="U0SEARCH"))
    await grant_in_force(running, "search")
    answer = json.dumps(await slash(running, fake_slack, "service search"), ensure_ascii=False)
    assert "*Paused* (`search`) by <@U0SEARCH>" in answer and "bad deploys" in answer
    assert "*Grant #" in answer and "`remediator` · restart · production runs *autonomous*" in answer
    assert "granted by <@U0VP>" in answer
    assert "Paused" not in json.dumps(await slash(running, fake_slack, "service checkout-api"))
