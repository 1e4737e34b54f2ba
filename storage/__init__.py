"""Persistence: sqlmodel tables, repositories, migrations and the audit ledger.

Imports neither `bot` nor `handlers`.
"""
