"""tests/conftest.py's rule for the PostgreSQL half of the suite: skipped (with one line saying how
to enable it) only outside CI, when nobody asked for PostgreSQL and nothing answers there."""

from __future__ import annotations

import pytest

from tests.conftest import postgres_skip_reason


def unreachable() -> bool:
    return False


def reachable() -> bool:
    return True


def never_asked() -> bool:
    raise AssertionError("the server is not probed when the answer does not depend on it")


def test_outside_ci_an_unreachable_server_skips_with_how_to_enable_it() -> None:
    reason = postgres_skip_reason({}, unreachable)
    assert reason is not None and "\n" not in reason
    assert "start PostgreSQL" in reason and "COUNTERSIGN_TEST_PG" in reason and "127.0.0.1:5432" in reason


def test_a_reachable_server_runs_them() -> None:
    assert postgres_skip_reason({}, reachable) is None
    assert postgres_skip_reason({"CI": "false"}, reachable) is None


@pytest.mark.parametrize("env", [{"CI": "true"}, {"CI": "TRUE"}, {"CI": "1"},
                                 {"COUNTERSIGN_TEST_PG": "postgresql://ci@db:5432/test"}])
def test_when_required_they_run_and_fail_rather_than_skip(env: dict[str, str]) -> None:
    assert postgres_skip_reason(env, never_asked) is None


def test_a_sqlite_only_run_does_not_look_for_postgresql() -> None:
    assert postgres_skip_reason({"COUNTERSIGN_TEST_DATABASES": "sqlite"}, never_asked) is None
