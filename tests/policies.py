"""Policies the tests use: second-scale durations, so escalation runs without long sleeps."""

FAST = """
leadership:
  channel: C0LEADERS
  users: [U0VP]
admins: [U0ADMIN]
tiers:
  tier1:
    escalation:
      - {notify: owner, after: 0s}
      - {notify: secondary, after: 2s}
      - {notify: leadership, after: 4s}
    remind_every: 1s
    timeout: 6s
    on_timeout: deny
  tier2:
    escalation:
      - {notify: owner, after: 0s}
    timeout: 1h
services:
  checkout-api:
    owner: U0OWNER
    secondary: dana@example.com
    channel: C0CHECKOUT
    tier: tier1
  search:
    owner: U0SEARCH
    channel: C0SEARCH
    tier: tier2
  batch:
    owner: U0BATCH
    channel: C0BATCH
rules:
  - match: {action_type: [drop_database, delete_data]}
    mode: forbidden
  - match: {tier: tier1, environment: production}
    mode: approve
  - match: {action_type: [rollback, restart]}
    mode: acknowledge
  - mode: autonomous
"""

# FAST with minute-scale escalation: for tests that count pages or outbox rows, which a 1 s
# reminder or a 2 s secondary page would add to on a slow machine.
CALM = (
    FAST.replace("after: 2s", "after: 20m").replace("after: 4s", "after: 40m")
    .replace("remind_every: 1s", "remind_every: 10m").replace("timeout: 6s", "timeout: 1h")
)

# CALM, with small autonomy thresholds and a brake at two overrides or failures.
AUTONOMY = (
    CALM
    + """
autonomy:
  promote: {min_decisions: 3, min_approval_rate: 0.9, max_failed_results: 0}
  demote: {max_override_rate: 0.5, max_failed_results: 2, window: 7d}
  grant_for: 1d
brake: {max_overrides: 2, max_failed_results: 2, window: 1h}
"""
)
