"""The deadline index: when each conversation must be looked at again, in a Redis sorted set.

Members are ``account:conversation``, scores the Unix time of the conversation's next due or at-risk
instant. The index is a cache of ``sla_conversations.next_check_at`` and is rebuilt from SQL on start, so a
Redis restart or flush loses nothing (docs/architecture.md, "Where state lives").
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from redis import Redis

from plugin.adapters import redis_keys

# Pop what is due atomically, so two sweepers (during a leader hand-over) never both take a deadline.
_POP_DUE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return due
"""


def member(account_id: int, conversation_id: int) -> str:
    """The sorted-set member of one conversation."""
    return f"{account_id}:{conversation_id}"


def parse_member(value: bytes | str) -> tuple[int, int]:
    """``account:conversation`` -> the pair of ids."""
    text = value.decode() if isinstance(value, bytes) else value
    account, conversation = text.split(":", 1)
    return int(account), int(conversation)


def schedule(redis: Redis, checks: Iterable[tuple[tuple[int, int], datetime | None]]) -> None:
    """Set (or clear, for None) the next check of each conversation (the last given for one counts): one ZADD
    and one ZREM for the lot, whatever their number, in one round trip."""
    latest = {member(*key): when for key, when in checks}
    due = {name: when.timestamp() for name, when in latest.items() if when is not None}
    cleared = [name for name, when in latest.items() if when is None]
    pipeline = redis.pipeline(transaction=False)
    if due:
        pipeline.zadd(redis_keys.DEADLINES, due)
    if cleared:
        pipeline.zrem(redis_keys.DEADLINES, *cleared)
    pipeline.execute()


def pop_due(redis: Redis, now: datetime, limit: int = 5000) -> list[tuple[int, int]]:
    """Remove and return the conversations whose check time is at or before ``now``."""
    return [parse_member(value) for value in redis.eval(_POP_DUE, 1, redis_keys.DEADLINES, now.timestamp(), limit)]


def earliest(redis: Redis) -> float | None:
    """The Unix time of the earliest pending check, if any."""
    first = redis.zrange(redis_keys.DEADLINES, 0, 0, withscores=True)
    return float(first[0][1]) if first else None


def pending(redis: Redis) -> int:
    """How many conversations have a pending check."""
    return int(redis.zcard(redis_keys.DEADLINES))
