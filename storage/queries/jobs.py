"""Queries over periodic jobs' runs (job_runs): what the previous run recorded."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import JobRun


async def last_result(session: AsyncSession, job: str) -> dict[str, Any] | None:
    """The `result` of the job's newest run that recorded one."""
    row = (await session.execute(select(JobRun).where(col(JobRun.job) == job, col(JobRun.result).is_not(None))
                                 .order_by(col(JobRun.id).desc()).limit(1))).scalars().first()
    return row.result if row is not None else None


async def missed(session: AsyncSession, job: str, period: str, prefix: str) -> bool:
    """Has the job run for an earlier period starting with `prefix`, and not for `period`?"""
    earlier = (await session.execute(select(col(JobRun.id)).where(col(JobRun.job) == job,
                                                                  col(JobRun.period).startswith(prefix))
                                     .limit(1))).scalars().first()
    if earlier is None:
        return False  # never ran: a new deployment waits for its first time
    held = (await session.execute(select(col(JobRun.id)).where(col(JobRun.job) == job,
                                                               col(JobRun.period) == period)
                                  .limit(1))).scalars().first()
    return held is None
