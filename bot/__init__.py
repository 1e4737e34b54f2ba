"""Countersign's domain: actions, policy, escalation, decisions, configuration and the app factory."""
