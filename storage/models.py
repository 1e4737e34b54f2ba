"""SQLModel tables: the whole persistent state of Countersign.

The schema is owned by the Alembic migrations in `storage/migrations`; a test checks
that these models and the migrations agree. JSON columns hold what is frozen at
submission (the policy rule and escalation chain), so editing the policy never
changes an action in flight.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, DateTime, Dialect, Index, Integer, Text, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

# BIGINT on PostgreSQL, INTEGER (so it is the rowid alias and autoincrements) on SQLite.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Always UTC-aware in Python. SQLite has no time zones: store naive UTC so text order is time order."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(nullable: bool, default: Any = None) -> Any:
    column: Column[datetime] = Column(UTCDateTime(), nullable=nullable)
    if default is not None:
        return Field(default_factory=default, sa_column=column)
    return Field(default=None, sa_column=column)


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


class Agent(SQLModel, table=True):
    __tablename__ = "agents"
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    name: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    token_hash: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    token_prefix: str = Field(sa_column=Column(Text, nullable=False))
    # The callback secret must be kept in clear to sign callbacks (like a Stripe endpoint secret).
    callback_secret: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = _ts(nullable=False, default=utcnow)
    revoked_at: datetime | None = _ts(nullable=True)
    last_used_at: datetime | None = _ts(nullable=True)


class Action(SQLModel, table=True):
    __tablename__ = "actions"
    __table_args__ = (
        Index("ix_actions_next_at", "next_at"),
        Index("ix_actions_status_id", "status", "id"),
        Index("ix_actions_service_id", "service", "id"),
        # id last: "pending for this owner, newest first" reads the index in order (/ai-actions mine).
        Index("ix_actions_owner_status", "owner", "status", "id"),
        Index("ix_actions_created_at", "created_at"),
        # /ai-actions mine and App Home: what someone decided, newest first.
        Index("ix_actions_decided_by_at", "decided_by", "decided_at"),
        # The digest's lists: what was decided during one day.
        Index("ix_actions_decided_at", "decided_at"),
        # /ai-actions stats: covers the window scan so the grouped count never reads the table.
        Index("ix_actions_stats", "created_at", "mode", "status", "accountability", "agent_id", "service",
              "decided_at"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    agent_id: int = Field(foreign_key="agents.id", nullable=False)
    kind: str  # proposed | executed
    service: str
    action_type: str
    summary: str = Field(sa_column=Column(Text, nullable=False))
    rationale: str = Field(sa_column=Column(Text, nullable=False))
    environment: str = "production"
    confidence: float | None = None
    evidence: list[dict[str, Any]] | None = _json()
    executed_at: datetime | None = _ts(nullable=True)
    callback_url: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    external_id: str | None = None
    model: dict[str, Any] | None = _json()
    extra: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSON, nullable=True))
    mode: str  # autonomous | acknowledge | approve  (forbidden is refused at ingest)
    status: str  # pending | approved | denied | acknowledged | overridden | expired | recorded
    policy_violation: bool = False
    # Frozen at submission: {"rule": {...}, "escalation": {...}, "owner", "secondary", "channel", ...}
    frozen: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    owner: str | None = None  # resolved Slack user id of the service owner
    # Escalation state: the level reached so far, and when the next step is due (NULL: nothing due).
    level: str | None = None  # owner | secondary | leadership
    next_at: datetime | None = _ts(nullable=True)
    created_at: datetime = _ts(nullable=False, default=utcnow)
    updated_at: datetime = _ts(nullable=False, default=utcnow)
    # The decision, once there is one.
    outcome: str | None = None
    decided_at: datetime | None = _ts(nullable=True)
    decided_by: str | None = None  # Slack user id, or a channel id for a level-default
    decided_by_name: str | None = None
    accountability: str | None = None  # explicit | default | policy
    decision_level: str | None = None
    decision_via: str | None = None  # button | slash | api | timeout | policy
    decision_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    version: int = 0


class Response(SQLModel, table=True):
    """Every attempt to respond to an action, accepted or refused."""

    __tablename__ = "responses"
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    action_id: int = Field(foreign_key="actions.id", nullable=False, index=True)
    slack_user_id: str
    user_name: str | None = None
    response: str  # approve | override | acknowledge
    via: str  # button | slash | api
    reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    accepted: bool
    refusal: str | None = None  # why it was refused: not_authorized | already_decided | not_applicable
    level: str | None = None
    created_at: datetime = _ts(nullable=False, default=utcnow)


class IdempotencyKey(SQLModel, table=True):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("agent_id", "key", name="uq_idempotency_agent_key"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    agent_id: int = Field(foreign_key="agents.id", nullable=False)
    key: str
    request_hash: str
    in_flight: bool = True
    response_status: int | None = None
    response_body: dict[str, Any] | None = _json()
    created_at: datetime = _ts(nullable=False, default=utcnow)


class EscalationStep(SQLModel, table=True):
    """A step that fired. The unique (action, step) pair makes a second firing impossible."""

    __tablename__ = "escalation_steps"
    __table_args__ = (UniqueConstraint("action_id", "step", name="uq_escalation_action_step"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    action_id: int = Field(foreign_key="actions.id", nullable=False)
    step: str  # e.g. "page:owner", "remind:secondary:2", "timeout"
    level: str | None = None
    due_at: datetime = _ts(nullable=False, default=utcnow)
    fired_at: datetime = _ts(nullable=False, default=utcnow)
    late_seconds: float = 0.0
    note: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class OutboxMessage(SQLModel, table=True):
    """An outbound Slack call or agent callback, written in the transaction that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    target: str  # slack | callback
    method: str  # Slack Web API method, or "POST" for a callback
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    action_id: int | None = Field(default=None, foreign_key="actions.id", index=True)
    purpose: str | None = None  # e.g. card:dm, card:channel, card:leadership, fyi, update, remind
    dedupe_key: str | None = None
    channel_key: str | None = None  # what paces it: one Slack channel or one callback host
    status: str = "pending"  # pending | sending | done | failed
    attempts: int = 0
    next_attempt_at: datetime = _ts(nullable=False, default=utcnow)
    claimed_until: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    result: dict[str, Any] | None = _json()
    created_at: datetime = _ts(nullable=False, default=utcnow)
    sent_at: datetime | None = _ts(nullable=True)


class DeliveryAttempt(SQLModel, table=True):
    """Every attempt to deliver an outbox message (Slack call or callback)."""

    __tablename__ = "delivery_attempts"
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    outbox_id: int = Field(foreign_key="outbox.id", nullable=False, index=True)
    attempt: int
    ok: bool
    status_code: int | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    at: datetime = _ts(nullable=False, default=utcnow)


class SlackMessage(SQLModel, table=True):
    """Where a copy of an action's card lives in Slack, so every copy can be updated in place."""

    __tablename__ = "slack_messages"
    __table_args__ = (UniqueConstraint("action_id", "purpose", name="uq_slack_message_action_purpose"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    action_id: int = Field(foreign_key="actions.id", nullable=False, index=True)
    purpose: str  # card:dm:owner, card:channel, card:leadership, ...
    channel: str
    ts: str
    created_at: datetime = _ts(nullable=False, default=utcnow)


class SlackUser(SQLModel, table=True):
    """Cache of users resolved by email (users.lookupByEmail) and of display names."""

    __tablename__ = "slack_users"
    key: str = Field(primary_key=True)  # an email or a user id
    slack_user_id: str | None = None
    name: str | None = None
    error: str | None = None
    fetched_at: datetime = _ts(nullable=False, default=utcnow)


class LedgerEntry(SQLModel, table=True):
    """Append-only, hash-chained audit ledger: hash = sha256(prev_hash || canonical JSON of entry)."""

    __tablename__ = "ledger"
    seq: int = Field(sa_column=Column(BigInt, primary_key=True, autoincrement=False))
    at: datetime = _ts(nullable=False, default=utcnow)
    event: str
    action_id: int | None = Field(default=None, index=True)
    actor: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    prev_hash: str
    hash: str


class LedgerHead(SQLModel, table=True):
    """One row: the chain's head. Appenders lock it so concurrent writers keep one chain."""

    __tablename__ = "ledger_head"
    id: int = Field(default=1, primary_key=True)
    seq: int = 0
    hash: str = ""


class JobRun(SQLModel, table=True):
    """A periodic job's run for one period (e.g. the digest for one day): unique, so it runs once."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "period", name="uq_job_runs_job_period"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    job: str
    period: str
    started_at: datetime = _ts(nullable=False, default=utcnow)
    result: dict[str, Any] | None = _json()


class StormThread(SQLModel, table=True):
    """The parent card under which a service's burst of actions is threaded."""

    __tablename__ = "storm_threads"
    __table_args__ = (UniqueConstraint("service", "window", name="uq_storm_service_window"),)
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    service: str
    window: str  # the minute the storm started, ISO
    channel: str
    ts: str | None = None
    count: int = 0
    created_at: datetime = _ts(nullable=False, default=utcnow)


class PacingBucket(SQLModel, table=True):
    """One channel's Slack send budget (a GCRA token bucket), shared by every replica: each locks
    the row while it decides whether a post may go (bot/delivery/pacing.py)."""

    __tablename__ = "pacing_buckets"
    key: str = Field(sa_column=Column(Text, primary_key=True))
    tat: float = 0.0  # theoretical arrival time of the next send, epoch seconds
    queue_tail: float = 0.0  # the latest send slot handed to a waiting message, epoch seconds


class BreakerState(SQLModel, table=True):
    """The Slack circuit breaker, shared by every replica: one outage, seen by all."""

    __tablename__ = "breaker_state"
    name: str = Field(sa_column=Column(Text, primary_key=True))
    failures: int = 0
    open_until: float = 0.0  # epoch seconds: the next probe
    opened_at: float | None = None  # epoch seconds the outage was noticed (None: closed)
    last_error: str = Field(default="", sa_column=Column(Text, nullable=False))
class ActionResult(SQLModel, table=True):
    """What the submitting agent reports once the action ran: stored once (the action id is unique)."""

    __tablename__ = "action_results"
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    action_id: int = Field(foreign_key="actions.id", nullable=False, unique=True)
    agent_id: int = Field(foreign_key="agents.id", nullable=False)
    result: str  # succeeded | failed | rolled_back
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    evidence: list[dict[str, Any]] | None = _json()
    request_hash: str
    created_at: datetime = _ts(nullable=False, default=utcnow)


class AutonomyGrant(SQLModel, table=True):
    """A change of mode for one agent x service x action_type x environment, decided from its track
    record: a promotion (granted or dismissed by a person) or a demotion (applied by countersign)."""

    __tablename__ = "autonomy_grants"
    __table_args__ = (
        Index("ix_autonomy_grants_live", "revoked_at", "until"),
        UniqueConstraint("dedupe_key", name="uq_autonomy_grants_dedupe"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    agent: str
    service: str
    action_type: str
    environment: str
    kind: str  # promote | demote
    decision: str  # granted | dismissed
    mode: str  # the mode it gives
    previous_mode: str
    by: str
    at: datetime = _ts(nullable=False, default=utcnow)
    until: datetime = _ts(nullable=False, default=utcnow)
    figures: dict[str, Any] | None = _json()
    revoked_at: datetime | None = _ts(nullable=True)
    revoked_by: str | None = None  # a person, or "expiry"
    dedupe_key: str | None = None


class Pause(SQLModel, table=True):
    """A kill switch: while it holds, every new action for its target needs approval. It ends at
    `until` (a deadline in the database: nothing has to run at that moment) or on resume."""

    __tablename__ = "pauses"
    __table_args__ = (
        Index("ix_pauses_live", "ended_at", "until"),
        UniqueConstraint("dedupe_key", name="uq_pauses_dedupe"),
    )
    id: int | None = Field(default=None, sa_column=Column(BigInt, primary_key=True, autoincrement=True))
    target: str  # a service, agent:NAME, all, or agent:NAME@service (the brake)
    service: str | None = None  # None: every service
    agent: str | None = None  # None: every agent
    by: str
    reason: str = Field(sa_column=Column(Text, nullable=False))
    started_at: datetime = _ts(nullable=False, default=utcnow)
    until: datetime | None = _ts(nullable=True)
    ended_at: datetime | None = _ts(nullable=True)
    ended_by: str | None = None  # a person, or "expiry"
    end_recorded: bool = False  # the end is in the ledger and announced
    dedupe_key: str | None = None  # the brake's: one pause per trip, whatever the replicas


# The track record (storage.queries.trust): one covering index for its window scans (the counts and
# the median time to decision), so neither reads the table.
_actions: Any = Action.__table__  # type: ignore[attr-defined]
Index("ix_actions_trust", *(_actions.c[name] for name in (
    "created_at", "agent_id", "service", "action_type", "environment", "status", "accountability",
    "policy_violation", "decided_at")))



class TrustRollup(SQLModel, table=True):
    """The track record of `days` whole UTC days from `first_day` (by `created_at`) per agent x service
    x action_type x environment: what storage.queries.trust_live.live counts for them. One-day rows
    (storage/queries/trust_rollup.py), and the spans of the usual windows summed from them."""

    __tablename__ = "trust_rollup"
    days: int = Field(sa_column=Column(Integer, primary_key=True))
    first_day: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), primary_key=True))
    agent_id: int = Field(sa_column=Column(Integer, primary_key=True))
    service: str = Field(sa_column=Column(Text, primary_key=True))
    action_type: str = Field(sa_column=Column(Text, primary_key=True))
    environment: str = Field(sa_column=Column(Text, primary_key=True))
    pending: int = 0
    approved: int = 0
    denied: int = 0
    acknowledged: int = 0
    overridden: int = 0
    expired: int = 0
    recorded: int = 0
    defaults: int = 0
    violations: int = 0
    succeeded: int = 0
    failed: int = 0
    rolled_back: int = 0
    # Explicit decisions per time bucket, JSON [bucket, count, ...] (trust_rollup.bucket): the median's histogram.
    decisions: str = Field(default="", sa_column=Column(Text, nullable=False))


class TrustRollupDay(SQLModel, table=True):
    """A day the rollup holds (dirty = False), or one changed since it was rolled up (dirty = True:
    read live until recounted). `token` moves on with every change, so a recount that raced a change
    leaves the day dirty, and a span summed before a change no longer matches its days."""

    __tablename__ = "trust_rollup_days"
    day: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), primary_key=True))
    dirty: bool = False
    token: int = 0


class TrustRollupSpan(SQLModel, table=True):
    """A span of days summed in `trust_rollup`, valid while its days are clean with these tokens."""

    __tablename__ = "trust_rollup_spans"
    days: int = Field(sa_column=Column(Integer, primary_key=True))
    first_day: datetime = Field(sa_column=Column(UTCDateTime(timezone=True), primary_key=True))
    tokens: str = Field(sa_column=Column(Text, nullable=False))  # the days' tokens, in order, comma-separated
