"""Run ``sla-plugin worker`` with a timestamp at each stage of a conversation's way to its label (bench only).

    python bench/stage_trace.py worker --no-sweeper --queue events      # what writeback_bench.py --stages runs

Each stage is pushed to the Redis list ``bench:stages`` as ``"<stage> <conversation id> <epoch seconds>
[<detail>]"``: ``picked`` (the drain read the entry; detail: the batch's size), ``committed`` (its batch's
transaction committed; detail: the seconds the transaction took), ``enqueued`` (owed to the write-back),
``round`` (a write-back round started; detail: the conversations owed then), ``started`` (a writer holds the
conversation's lock and a slot), ``budgeted`` (its label call left the request budget), ``written`` (the
helpdesk answered).
The workers' code is wrapped here, not changed: what is measured is what runs.
"""

from __future__ import annotations

import functools
import json
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plugin.adapters import redis_keys  # noqa: E402
from plugin.adapters.request_budget import RequestBudget  # noqa: E402
from plugin.adapters.store import Store  # noqa: E402
from plugin.jobs import drain, writeback  # noqa: E402
from plugin.jobs.runtime import current_runtime  # noqa: E402

STAGES = "bench:stages"
_current = threading.local()  # the conversation a write-back thread is on


def record(stage: str, conversation_ids, detail: object = "") -> None:
    """Push one timestamped stage for each conversation."""
    now = time.time()
    lines = [f"{stage} {conversation_id} {now:.4f} {detail}".rstrip() for conversation_id in conversation_ids]
    if lines:
        current_runtime().redis.rpush(STAGES, *lines)


def _conversation_of(fields: dict) -> int | None:
    try:
        return int(json.loads(fields[b"body"])["id"])
    except (KeyError, ValueError, TypeError):
        return None


def _wrap() -> None:
    process_entries = drain.process_entries

    @functools.wraps(process_entries)
    def traced_entries(runtime, entries, clock):
        ids = [conversation for _, _, fields in entries if (conversation := _conversation_of(fields))]
        record("picked", ids, len(entries))
        return process_entries(runtime, entries, clock)

    drain.process_entries = traced_entries

    batch = Store.batch

    @contextmanager
    def traced_batch(self, keys):
        keys = sorted(set(keys))
        began = time.time()
        with batch(self, keys) as opened:
            yield opened
        record("committed", [key[1] for key in keys], f"{time.time() - began:.4f}")

    Store.batch = traced_batch  # type: ignore[method-assign]

    enqueue = writeback.enqueue_writebacks

    @functools.wraps(enqueue)
    def traced_enqueue(redis, keys):
        keys = list(keys)
        record("enqueued", [key[1] for key in keys])
        return enqueue(redis, keys)

    writeback.enqueue_writebacks = traced_enqueue

    deliver_owed = writeback.Writer.deliver_owed

    def traced_owed(self, account_id, *args, **kwargs):
        record("round", [0], self.runtime.redis.zcard(redis_keys.writeback_owed(account_id)))
        return deliver_owed(self, account_id, *args, **kwargs)

    writeback.Writer.deliver_owed = traced_owed  # type: ignore[method-assign]

    deliver = writeback.Writer._deliver

    def traced_deliver(self, account_id, conversation_id):
        _current.conversation = conversation_id
        record("started", [conversation_id])
        return deliver(self, account_id, conversation_id)

    writeback.Writer._deliver = traced_deliver  # type: ignore[method-assign]

    before_request = RequestBudget.before_request

    def traced_budget(self):
        before_request(self)
        record("budgeted", [getattr(_current, "conversation", 0)])

    RequestBudget.before_request = traced_budget  # type: ignore[method-assign]

    set_labels = writeback.Writer._set_labels

    def traced_labels(self, conversation_id, labels):
        set_labels(self, conversation_id, labels)
        record("written", [conversation_id])

    writeback.Writer._set_labels = traced_labels  # type: ignore[method-assign]


if __name__ == "__main__":
    _wrap()
    from plugin.cli.main import main

    main()
