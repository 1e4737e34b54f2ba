"""The web pages' pure parts: link signing (what a link grants, and every way to break one) and
the charts' geometry for a known history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from bot.config import Settings
from handlers.web import links
from handlers.web.charts import decisions_per_day, override_rate, time_to_decision
from storage.queries.pages import Decided

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_signed_link_grants_its_page_to_its_viewer_for_seven_days() -> None:
    url = links.sign(KEY, "https://cs.example.com/", "a/42", "U0OWNER", NOW)
    assert url.startswith("https://cs.example.com/a/42?u=U0OWNER&e=")
    grant = links.check(KEY, "a/42", _query(url), NOW + timedelta(days=6, hours=23))
    assert (grant.page, grant.viewer, grant.is_person) == ("a/42", "U0OWNER", True)
    with pytest.raises(links.LinkRefused, match="expired"):
        links.check(KEY, "a/42", _query(url), NOW + timedelta(days=7, seconds=1))


@pytest.mark.parametrize("change", [
    {"u": "U0OTHER"}, {"e": "9999999999"}, {"e": "soon"}, {"s": "x" * 43}, {"s": ""}, {"u": ""},
])
def test_any_change_to_a_link_refuses_it(change: dict[str, str]) -> None:
    query = {**_query(links.sign(KEY, "http://h", "a/42", "U0OWNER", NOW)), **change}
    with pytest.raises(links.LinkRefused):
        links.check(KEY, "a/42", query, NOW)


def test_a_link_opens_only_its_own_page_and_only_with_its_key() -> None:
    query = _query(links.sign(KEY, "http://h", "a/42", "U0OWNER", NOW))
    for page, key in (("a/43", KEY), ("s/checkout-api", KEY), ("a/42", b"other")):
        with pytest.raises(links.LinkRefused, match="altered"):
            links.check(key, page, query, NOW)


def test_link_key_prefers_its_own_secret_else_derives_from_the_signing_secret() -> None:
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    signing = base.model_copy(update={"slack_signing_secret": SecretStr("s1")})
    own = signing.model_copy(update={"link_secret": SecretStr("mine")})
    assert links.link_key(own) != links.link_key(signing)
    assert links.link_key(signing) == links.link_key(base.model_copy(update={"slack_signing_secret": SecretStr("s1")}))
    assert links.link_key(signing) != links.link_key(base.model_copy(update={"slack_signing_secret": SecretStr("s2")}))
    assert links.link_key(signing) != b"s1"  # derived, never the signing secret itself


def test_csrf_token_is_bound_to_cookie_and_link() -> None:
    grant = links.Grant("a/42", "U0OWNER", 1)
    token = links.csrf_token(KEY, "cookie", grant)
    assert links.csrf_ok(KEY, "cookie", grant, token)
    assert not links.csrf_ok(KEY, "other-cookie", grant, token)
    assert not links.csrf_ok(KEY, "cookie", links.Grant("a/43", "U0OWNER", 1), token)
    assert not links.csrf_ok(KEY, "", grant, token)


def _d(agent: str, outcome: str | None, day: int, took: float, how: str | None = "explicit") -> Decided:
    created = NOW - timedelta(days=day)
    return Decided(agent, outcome or "pending", outcome, how if outcome else None, created,
                   created + timedelta(seconds=took) if outcome else None)


HISTORY = [
    _d("a", "approved", 0, 30), _d("a", "denied", 0, 400), _d("b", "approved", 2, 4000),
    _d("b", "expired", 20, 50, how="default"), _d("b", None, 0, 0),
]


def test_decisions_per_day_stacks_outcomes_and_skips_quiet_days() -> None:
    chart = decisions_per_day(HISTORY, NOW.date(), days=14)
    assert [b.label for b in chart.bars] == ["Feb 27", "Mar 01"]  # day 20 is outside the window
    assert [len(b.rects) for b in chart.bars] == [1, 2]
    today = chart.bars[1].rects
    assert today[0].y + today[0].h == pytest.approx(190) and today[1].y + today[1].h == pytest.approx(today[0].y)
    assert {label for label, _ in chart.legend} == {"approved", "denied"}


def test_time_to_decision_buckets_explicit_responses() -> None:
    chart = time_to_decision(HISTORY)
    assert [b.total for b in chart.bars] == [1, 0, 1, 0, 1, 0]  # 30 s, 400 s, 4000 s
    assert time_to_decision([]).empty


def test_override_rate_per_agent() -> None:
    chart = override_rate(HISTORY)
    assert [(b.label, b.total) for b in chart.bars] == [("a", 0.5), ("b", 0.0)]
