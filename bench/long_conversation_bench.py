"""CPU per event as a conversation grows, and bytes stored per event, through the worker path, in one run.

    python bench/long_conversation_bench.py [--lengths 20,1000,5000] [--window 40] [--conversations 500]

Events are trickled in one at a time, as a live helpdesk sends them: each Chatwoot webhook body (the shared
fixtures with new ids and times; customer and agent messages taking turns, an agent replying within minutes)
goes through the worker's ``process_entries`` (normalise, fold, store) in its own transaction, on a SQLite
file with the shipped rules (which test message content, so customer texts are kept within their budget).
One conversation grows to the longest length; the CPU time of the ``--window`` events that take it past
each length is the cost per event at that length, printed as a ratio to the shortest length's (target:
at most 1.5x at 5,000). Bytes per event: ``--conversations`` conversations of 20 events each in another
database, vacuumed, divided by the events stored (target: at most 300), and the same for the long one;
with ``--tables``, the short database's bytes per table and index (SQLite's ``dbstat``), per conversation.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from plugin.adapters.redis_keys import EVENT_STREAM  # noqa: E402
from plugin.adapters.services import EmbeddedRedis  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "chatwoot"
TEXTS = [
    "Hi, my order #5531 hasn't arrived yet.",
    "Any news on this? The tracking page still shows nothing.",
    "Thanks, I will wait for the courier then.",
    "It says delivered but I have nothing here.",
]


class Conversation:
    """Webhook bodies of one conversation: created, then customer and agent messages taking turns."""

    def __init__(self, conversation_id: int, start: datetime):
        self.id = conversation_id
        self.start = start
        self.created = json.loads((FIXTURES / "conversation_created.json").read_text())
        self.incoming = json.loads((FIXTURES / "message_created-incoming.json").read_text())
        self.outgoing = json.loads((FIXTURES / "message_created-outgoing.json").read_text())
        self.sent = 0

    def next(self, number: int) -> tuple[tuple[str, bytes, dict], datetime]:
        """The next webhook body as the receiver hands it over (stream entry ``number``), and its time."""
        sent, self.sent = self.sent, self.sent + 1
        created_at = int(self.start.timestamp())
        if sent == 0:
            body = dict(self.created, id=self.id, created_at=created_at, updated_at=created_at)
            moment = self.start
        else:
            template = self.incoming if sent % 2 == 1 else self.outgoing
            # The customer writes every 40 minutes; the agent answers 7 minutes later. Chatwoot sends the
            # conversation as it is now with every message: here, assigned and labelled as in the fixture.
            moment = self.start + timedelta(minutes=40 * ((sent - 1) // 2) + (7 if sent % 2 == 0 else 0))
            body = dict(
                template,
                id=self.id * 100_000 + sent,
                conversation=dict(self.outgoing["conversation"], id=self.id, created_at=created_at),
                content=TEXTS[sent % len(TEXTS)] if sent % 2 == 1 else "We are looking into it.",
                created_at=moment.isoformat().replace("+00:00", "Z"),
            )
        fields = {
            b"connector": b"chatwoot",
            b"body": json.dumps(body).encode(),
            b"received_at": moment.isoformat().encode(),
        }
        return (EVENT_STREAM, f"{number}-0".encode(), fields), moment


def stored_bytes(database: Path) -> int:
    """The database's size once vacuumed (the write-ahead log folded in)."""
    connection = sqlite3.connect(database)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("VACUUM")
    page_count = connection.execute("PRAGMA page_count").fetchone()[0]
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    connection.close()
    return page_count * page_size


def btree_bytes(database: Path) -> list[tuple[str, int]]:
    """Bytes of each table and index (its pages), largest first; empty when SQLite lacks ``dbstat``."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC").fetchall()
    except sqlite3.OperationalError:  # built without SQLITE_ENABLE_DBSTAT_VTAB
        rows = []
    connection.close()
    return rows


def runtime_on(database: Path, redis_url: str):
    """A worker runtime on its own database."""
    os.environ.update(REDIS_URL=redis_url, DATABASE_URL=f"sqlite:///{database}", SLA_RULES_DIR=str(ROOT / "rules"))
    os.environ.pop("CHATWOOT_URL", None)
    from plugin.adapters.settings import Settings
    from plugin.jobs.runtime import Runtime

    return Runtime.from_settings(Settings.from_env())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="20,1000,5000")
    parser.add_argument("--window", type=int, default=40, help="events timed at each length")
    parser.add_argument("--conversations", type=int, default=500, help="20-event conversations for bytes/event")
    parser.add_argument("--tables", action="store_true", help="bytes per table and index of the short database")
    arguments = parser.parse_args()
    lengths = sorted(int(value) for value in arguments.lengths.split(","))
    from plugin.jobs.drain import process_entries

    with tempfile.TemporaryDirectory() as folder, EmbeddedRedis(folder) as server:
        # Each event is processed at its own time, as the worker does when the helpdesk sends it live.
        start = datetime(2026, 1, 5, 8, tzinfo=UTC)
        runtime = runtime_on(Path(folder) / "long.sqlite3", server.url)
        conversation = Conversation(1_000, start)
        cpu: dict[int, float] = {}
        number = 0

        def send(item: Conversation) -> None:
            nonlocal number
            number += 1
            stream_entry, moment = item.next(number)
            process_entries(runtime, [stream_entry], lambda: moment)

        for length in lengths:
            while conversation.sent < length:
                send(conversation)
            started = time.process_time()
            for _ in range(arguments.window):
                send(conversation)
            cpu[length] = (time.process_time() - started) / arguments.window
        stored = runtime.store.summary((1, 1_000))
        assert stored is not None and stored["policy"], "the worker stored no evaluation"
        long_events = conversation.sent
        long_bytes = stored_bytes(Path(folder) / "long.sqlite3")

        runtime = runtime_on(Path(folder) / "short.sqlite3", server.url)
        many = [
            Conversation(10_000 + index, start + timedelta(seconds=index)) for index in range(arguments.conversations)
        ]
        for _ in range(20):
            for item in many:
                send(item)
        short_events = 20 * arguments.conversations
        short_bytes = stored_bytes(Path(folder) / "short.sqlite3")
        tables = btree_bytes(Path(folder) / "short.sqlite3") if arguments.tables else []

    base = cpu[lengths[0]]
    print("CPU per event (worker path: normalise, fold, store on SQLite), one event per transaction:")
    for length in lengths:
        print(
            f"  into a {length:5d}-message conversation: {cpu[length] * 1000:7.2f} ms  ratio {cpu[length] / base:5.2f}x"
        )
    print(f"  target: at most 1.5x at {lengths[-1]} messages")
    print("bytes stored per event (SQLite, vacuumed):")
    print(
        f"  {arguments.conversations} conversations x 20 events: {short_bytes / short_events:7.0f} bytes/event"
        f"  ({short_bytes} bytes, {short_events} events)"
    )
    print(f"  one conversation of {long_events} events: {long_bytes / long_events:7.0f} bytes/event")
    print("  target: at most 300 bytes/event")
    if tables:
        print(f"bytes per conversation of 20 events, by table and index ({arguments.conversations} conversations):")
        for name, size in tables:
            print(f"  {name:45s} {size / arguments.conversations:8.0f}")


if __name__ == "__main__":
    main()
