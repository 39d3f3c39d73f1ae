"""The names of inboxes, teams, agents and policies, kept beside the SLA data for reports (``sla_names``).

Reports group and filter by ids; people read names. Names are learned from two places: the webhook
payloads the workers read (a message's ``inbox``, a conversation's ``meta.assignee`` and ``meta.team``, the
policy an evaluation applied) and the helpdesk's API (inboxes, agents, teams), refreshed periodically. The
latest name seen wins. A name is written only when it is new or changed, so the many workers that see the
same inbox do not queue on one row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from plugin.adapters.store import names, storable_text, upsert

KINDS = ("inbox", "team", "agent", "policy")
MAX_NAME = 500  # the column's width; a longer name is cut, not refused


@dataclass(frozen=True)
class Name:
    """One thing's name: ``kind`` is inbox, team, agent or policy; ``key`` its id as text."""

    account_id: int
    kind: str
    key: str
    name: str


Names = dict[str, dict[str, str]]  # kind -> key -> name


class Directory:
    """Reads and learns names in one database."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def learn(self, found: Iterable[Name], now: datetime | None = None) -> int:
        """Store the names that are new or changed; returns how many were written."""
        latest: dict[tuple[int, str, str], str] = {}
        for item in found:
            if item.kind in KINDS and item.name.strip():
                latest[(item.account_id, item.kind, item.key)] = storable_text(item.name.strip(), MAX_NAME)
        if not latest:
            return 0
        with self.engine.begin() as connection:
            known = {
                (row.account_id, row.kind, row.key): row.name
                for row in connection.execute(
                    sa.select(names.c.account_id, names.c.kind, names.c.key, names.c.name).where(
                        sa.tuple_(names.c.account_id, names.c.kind, names.c.key).in_(sorted(latest))
                    )
                )
            }
            changed = [
                {"account_id": key[0], "kind": key[1], "key": key[2], "name": name, "updated_at": now or _now()}
                for key, name in sorted(latest.items())
                if known.get(key) != name
            ]
            upsert(connection, names, changed, ("account_id", "kind", "key"))
        return len(changed)

    def names(self, accounts: Iterable[int] | None = None) -> Names:
        """Every known name (of ``accounts``, default all), by kind and key. When accounts share an id,
        the lowest account's name is kept (one deployment normally serves one account)."""
        query = sa.select(names.c.account_id, names.c.kind, names.c.key, names.c.name).order_by(
            names.c.account_id.desc()
        )
        chosen = list(accounts) if accounts is not None else None
        if chosen is not None:
            query = query.where(names.c.account_id.in_(chosen))
        found: Names = {kind: {} for kind in KINDS}
        with self.engine.connect() as connection:
            for row in connection.execute(query):
                found.setdefault(row.kind, {})[row.key] = row.name
        return found


def name_of(known: Mapping[str, Mapping[str, str]], kind: str, key: object) -> str | None:
    """The name of one inbox, team, agent or policy; its id as text when unknown; None for no value."""
    if key is None:
        return None
    return known.get(kind, {}).get(str(key), str(key))


def _now() -> datetime:
    return datetime.now(UTC)
