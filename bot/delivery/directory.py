"""Slack people: resolve a policy's user spec (a `U…` id or an email) to a user id, cached.

Emails are resolved with `users.lookupByEmail`, names with `users.info`; answers (and permanent
failures) are cached in the `slack_users` table for a day so a page never waits on Slack twice for
the same person. `people` serves readers (the API's `decision.by`): the cache first, whatever its age.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.contract.serialize import Person, decider_spec, with_person
from bot.delivery.pacing import slack_error
from bot.services import Services
from storage.models import SlackUser
from storage.queries import names as names_q

log = logging.getLogger(__name__)
CACHE_FOR = timedelta(days=1)
# How long a reader (an API answer) waits for Slack to name someone the cache has never seen; the
# lookup goes on without it and fills the cache for the next answer.
LOOKUP_WAIT_SECONDS = 1.0
NOT_FOUND = ("users_not_found", "user_not_found", "account_inactive")


class UserNotFound(LookupError):
    """A permanent failure: Slack says this person does not exist (or is not reachable)."""


def is_email(spec: str) -> bool:
    return "@" in spec


def is_user(spec: str) -> bool:
    return spec[:1] in ("U", "W") and spec.isalnum()


def _cache_key(spec: str) -> str:
    return spec.lower() if is_email(spec) else spec


async def cached_id(session: AsyncSession, spec: str, now: datetime) -> str | None:
    """The user id an e-mail is known by (the cache `resolve` fills), without asking Slack."""
    cached = await session.get(SlackUser, spec.lower())
    if cached is not None and cached.slack_user_id and now - cached.fetched_at < CACHE_FOR:
        return str(cached.slack_user_id)
    return None


async def resolve(svc: Services, spec: str | None) -> str | None:
    """A user spec -> Slack user id. Raises UserNotFound for an email Slack does not know.
    Concurrent callers for one email share one lookup (one users.lookupByEmail, one cache row)."""
    if not spec or not is_email(spec):
        return spec
    # a caller cancelled (a timed-out request) leaves the others theirs
    return await asyncio.shield(_flight(svc, spec.lower(), lambda: _resolve_email(svc, spec)))


def _flight(svc: Services, key: str, ask: Callable[[], Coroutine[Any, Any, str | None]]) -> asyncio.Future[str | None]:
    """The lookup of `key` in flight, started if none is: concurrent callers share one question to
    Slack (keys: lowercased emails, and user ids for their names)."""
    flight = svc.email_lookups.get(key)
    if flight is None:
        flight = svc.email_lookups[key] = asyncio.ensure_future(ask())
        flight.add_done_callback(lambda done: svc.email_lookups.pop(key, None)
                                 if svc.email_lookups.get(key) is done else None)
    return flight


async def _resolve_email(svc: Services, spec: str) -> str | None:
    now = svc.clock()
    async with svc.db.session() as session:
        cached = await session.get(SlackUser, spec.lower())
        if cached is not None and now - cached.fetched_at < CACHE_FOR:
            if cached.slack_user_id:
                return cached.slack_user_id
            raise UserNotFound(f"{spec}: {cached.error}")
    if svc.slack is None:
        return None
    try:
        resp: Any = await _lookup_by_email(svc, spec)
        user_id, name, error = resp["user"]["id"], resp["user"].get("real_name") or resp["user"].get("name"), None
    except SlackApiError as exc:
        code = slack_error(exc.response)  # an outage may answer HTML, not JSON
        if code not in NOT_FOUND:
            raise  # temporary or configuration trouble: let the caller retry
        user_id, name, error = None, None, code
    async with svc.db.session() as session:
        row = await session.get(SlackUser, spec.lower()) or SlackUser(key=spec.lower())
        row.slack_user_id, row.name, row.error, row.fetched_at = user_id, name, error, now
        session.add(row)
        try:
            await session.commit()
        except IntegrityError:  # a concurrent lookup cached the same person first: keep theirs
            await session.rollback()
    if user_id is None:
        raise UserNotFound(f"{spec}: {error}")
    return user_id


async def _lookup_by_email(svc: Services, email: str) -> Any:
    """POST form first (Slack accepts both); a server that only routes GET (as slack_sdk's own
    users_lookupByEmail sends it) answers 404/405, and then we ask that way."""
    try:
        return await svc.slack.api_call("users.lookupByEmail", data={"email": email})
    except SlackApiError as exc:
        if exc.response is None or exc.response.status_code not in (404, 405):
            raise
    return await svc.slack.users_lookupByEmail(email=email)


async def resolve_all(svc: Services, specs: list[str]) -> set[str]:
    """Every spec that resolves; people Slack cannot find are skipped (and logged)."""
    ids: set[str] = set()
    for spec in specs:
        try:
            user_id = await resolve(svc, spec)
        except UserNotFound as exc:
            log.warning("cannot resolve %s", exc)
            continue
        except SlackApiError as exc:
            log.warning("cannot resolve %s now: %s", spec, exc)
            continue
        if user_id:
            ids.add(user_id)
    return ids


async def name_of(svc: Services, user_id: str) -> str | None:
    """A user id's name as Slack shows it (users.info), cached; None if Slack cannot say. Concurrent
    callers for one id share one question."""
    if svc.slack is None:
        return None
    return await asyncio.shield(_flight(svc, user_id, lambda: _ask_name(svc, user_id)))


async def _ask_name(svc: Services, user_id: str) -> str | None:
    try:
        resp: Any = await svc.slack.users_info(user=user_id)
    except Exception as exc:  # a name is a nicety: the reader shows the id instead
        code = slack_error(exc.response) if isinstance(exc, SlackApiError) else None
        log.info("users.info %s failed: %s", user_id, exc)
        if code in NOT_FOUND:  # permanent: remembered, so a reader does not ask again and again
            async with svc.db.session() as session:
                await names_q.remember(session, user_id, None, svc.clock(), error=code)
        return None
    user = resp.get("user") or {}
    profile = user.get("profile") or {}
    name = profile.get("display_name") or user.get("real_name") or profile.get("real_name") or user.get("name")
    if name:
        async with svc.db.session() as session:
            await names_q.remember(session, user_id, str(name), svc.clock())
    return str(name) if name else None


def _log_failure(flight: asyncio.Future[str | None]) -> None:
    if not flight.cancelled() and flight.exception() is not None:
        log.info("cannot name someone now: %s", flight.exception())


def _ask(svc: Services, spec: str) -> Coroutine[Any, Any, str | None]:
    return _resolve_email(svc, spec) if is_email(spec) else _ask_name(svc, spec)


def _people_of(specs: Iterable[str], cached: dict[str, tuple[str | None, str | None]]) -> dict[str, Person]:
    found = {}
    for spec in specs:
        hit = cached.get(_cache_key(spec))
        if hit is not None:
            found[spec] = Person(spec if is_user(spec) else hit[0], hit[1])
    return found


async def known_people(session: AsyncSession, specs: Iterable[str | None]) -> dict[str, Person]:
    """{spec: Person} for the emails and user ids among `specs` that the cache holds, whatever their
    age (an id does not change, a name seldom): one statement, none without a spec. No Slack."""
    wanted = {s for s in specs if s and (is_email(s) or is_user(s))}
    if not wanted:
        return {}
    return _people_of(wanted, await names_q.known(session, {_cache_key(s) for s in wanted}))


async def people(svc: Services, specs: Iterable[str | None], *, wait: float = LOOKUP_WAIT_SECONDS,
                 session: AsyncSession | None = None) -> dict[str, Person]:
    """`known_people`, and those the cache has never seen asked of Slack (when configured), waiting
    at most `wait` seconds: a reader is never held up by Slack for long, and whoever it could not
    name is left out (the caller shows the spec as given). `session`: the caller's, for the cache
    read (a second pooled connection cost an API read ~1 ms)."""
    wanted = {s for s in specs if s and (is_email(s) or is_user(s))}
    if not wanted:
        return {}
    if session is not None:
        found = await known_people(session, wanted)
    else:
        async with svc.db.read_session() as own:
            found = await known_people(own, wanted)
    unseen = sorted(wanted - found.keys())
    if not unseen or svc.slack is None:
        return found
    flights = [_flight(svc, _cache_key(s), partial(_ask, svc, s)) for s in unseen]
    for flight in flights:  # one that fails after we stopped waiting has nobody to tell: logged here
        flight.add_done_callback(_log_failure)
    await asyncio.wait(flights, timeout=wait)
    async with svc.db.read_session() as session:  # what the finished lookups cached, with the names
        found.update(await known_people(session, unseen))
    return found


async def name_deciders(svc: Services, bodies: Iterable[dict[str, Any]], session: AsyncSession | None = None) -> None:
    """Each body's `decision.by` as SPEC gives it (bot.contract.serialize.with_person): one cache
    read for a page of actions, none when no decision names an email or a policy's person."""
    bodies = list(bodies)
    found = await people(svc, [decider_spec(b.get("decision")) for b in bodies], session=session)
    if found:
        for body in bodies:
            body["decision"] = with_person(body.get("decision"), found)


async def mention_ids(svc: Services, specs: Iterable[str | None]) -> dict[str, str]:
    """{email: Slack user id} for the emails among `specs` that resolve (`people`), so a message
    can mention them: Slack shows a mention as the person's name, an email as text."""
    found = await people(svc, [s for s in specs if s and is_email(s)])
    return {spec: person.user_id for spec, person in found.items() if person.user_id}
