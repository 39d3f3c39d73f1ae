"""The pure core: events, policies, calendars, the SLA engine, the rule language and report figures.

Nothing here performs I/O or reads a clock: functions take typed data (and the time) and return typed data.
An import contract (pyproject.toml, ``lint-imports``) keeps it so: the core imports nothing from the
adapters, jobs, web, cli or connectors, nor flask, rq, redis, sqlalchemy or requests.
"""
