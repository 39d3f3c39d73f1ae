"""Test helpers for the shared PostgreSQL test database."""

from __future__ import annotations

import psycopg
from sqlalchemy.engine import make_url


def empty_public_schema(database_url: str) -> None:
    """Drop and re-create the public schema: the session's database may hold another test's tables."""
    url = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        # A test that left a transaction open would make the DROP wait forever: fail loudly instead.
        connection.execute("SET lock_timeout = '20s'")
        connection.execute("DROP SCHEMA public CASCADE")
        connection.execute("CREATE SCHEMA public")
