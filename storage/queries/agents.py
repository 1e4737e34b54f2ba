"""Agents and their bearer tokens (only a hash is stored)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.ledger import chain as ledger
from storage.models import Agent, utcnow

TOKEN_PREFIX = "cs_"
SECRET_PREFIX = "whsec_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class AgentExists(ValueError):
    pass


async def create(session: AsyncSession, name: str) -> tuple[Agent, str]:
    """Create an agent; returns it and its bearer token (the only time the token exists in clear)."""
    existing = (await session.execute(select(Agent).where(col(Agent.name) == name))).scalar_one_or_none()
    if existing is not None:
        # A revoked agent keeps its name: its actions and ledger entries name it.
        gone = (f" (revoked {existing.revoked_at:%Y-%m-%d %H:%M} UTC; its actions keep the name: choose another)"
                if existing.revoked_at else "")
        raise AgentExists(f"an agent named {name!r} already exists{gone}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    agent = Agent(
        name=name,
        token_hash=hash_token(token),
        token_prefix=token[:10],
        callback_secret=SECRET_PREFIX + secrets.token_urlsafe(32),
    )
    session.add(agent)
    await session.flush()
    await ledger.append(session, "agent.created", {"agent": name, "token_prefix": agent.token_prefix})
    return agent, token


async def by_token(session: AsyncSession, token: str) -> Agent | None:
    agent = (
        await session.execute(select(Agent).where(col(Agent.token_hash) == hash_token(token)))
    ).scalar_one_or_none()
    if agent is None or agent.revoked_at is not None:
        return None
    return agent


async def list_all(session: AsyncSession) -> list[Agent]:
    return list((await session.execute(select(Agent).order_by(col(Agent.id)))).scalars())


async def revoke(session: AsyncSession, name: str) -> Agent | None:
    agent = (await session.execute(select(Agent).where(col(Agent.name) == name))).scalar_one_or_none()
    if agent is None:
        return None
    if agent.revoked_at is None:
        agent.revoked_at = utcnow()
        session.add(agent)
        await ledger.append(session, "agent.revoked", {"agent": name})
    return agent


async def names(session: AsyncSession) -> dict[int, str]:
    """Every agent's name by id (a handful of rows: cheaper than a join on every listed action)."""
    return {i: n for i, n in (await session.execute(select(col(Agent.id), col(Agent.name)))).all()}
