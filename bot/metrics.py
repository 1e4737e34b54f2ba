"""Prometheus metrics, one registry per application (so tests can run several side by side)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "countersign_http_requests", "HTTP API requests", ["method", "route", "status"], registry=r
        )
        self.actions_submitted = Counter(
            "countersign_actions_submitted", "Actions accepted", ["kind", "mode"], registry=r
        )
        # reason: forbidden (a rule forbids it, 403) or unknown_service (not in the policy, 422).
        self.actions_refused = Counter(
            "countersign_actions_refused", "Actions refused by policy", ["reason"], registry=r
        )
        # Counted after the commit: a response (via button/slash/api), a timeout, or the policy.
        self.decisions = Counter(
            "countersign_decisions", "Decisions", ["outcome", "accountability", "via"], registry=r
        )
        self.pending = Gauge("countersign_pending_actions", "Pending actions by level", ["level"], registry=r)
        self.next_step_at = Gauge("countersign_escalation_next_step_timestamp_seconds",
                                  "When the earliest escalation step is due (0: none)", registry=r)
        self.steps_fired = Counter("countersign_escalation_steps", "Escalation steps fired", ["kind"], registry=r)
        self.step_lateness = Histogram(
            "countersign_escalation_lateness_seconds",
            "How late escalation steps fired",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.outbox_backlog = Gauge("countersign_outbox_backlog", "Messages waiting to be sent", registry=r)
        self.outbox_oldest_age = Gauge(
            "countersign_outbox_oldest_age_seconds", "Age of the oldest unsent message", registry=r
        )
        self.outbox_failed = Gauge("countersign_outbox_failed", "Deliveries that failed for good", registry=r)
        self.outbox_sent = Counter("countersign_outbox_sent", "Messages delivered", ["target", "method"],
                                   registry=r)
        self.outbox_errors = Counter(
            "countersign_outbox_errors", "Delivery errors", ["target", "error", "permanent"], registry=r
        )
        self.paging_unreachable = Gauge(
            "countersign_paging_unreachable", "Pending actions no escalation level could be paged for", registry=r)
        self.slack_rate_limited = Counter("countersign_slack_rate_limited", "429s received from Slack",
                                          registry=r)
        # From Slack's answer to the commit that marks the row done: a crash inside it re-sends.
        self.outbox_mark_window = Histogram(
            "countersign_outbox_mark_window_seconds", "Slack answered -> row marked done",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=r)

    def decided(self, *, outcome: str | None, accountability: str | None, via: str | None) -> None:
        """One decision recorded and committed."""
        self.decisions.labels(outcome=outcome or "none", accountability=accountability or "none",
                              via=via or "none").inc()
