"""The plugin's locks in Redis. Each one expires, so a lock held by a process that dies comes back by itself.

- :class:`Lease`: one holder at a time, renewed by its holder while it lives (the sweeper's leader election);
- :func:`writeback_exclusive`: one writer per conversation, and at most N writers per account at once (the
  write-back's read-merge-write of labels, and the helpdesk's rate limit).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis

from plugin.adapters import redis_keys

# Renew the lease only while we still hold it (compare-and-set on the token).
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Take one of N slots of a semaphore (slots expire, so a killed worker's slot comes back).
_TAKE_SLOT = """
for slot = 1, tonumber(ARGV[1]) do
  if redis.call('SET', KEYS[1] .. ':' .. slot, ARGV[2], 'NX', 'EX', ARGV[3]) then return slot end
end
return 0
"""


class Busy(RuntimeError):
    """The lock is held by someone else; the caller tries again later."""


class SlotsBusy(Busy):
    """Every slot of the account is taken: as many writers as allowed are at work already."""


class Lease:
    """A lease on one key: taken when free, renewed by its holder, lost when the holder stops renewing it."""

    def __init__(self, redis: Redis, key: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.key = key
        self.ttl_seconds = ttl_seconds
        self.token = uuid.uuid4().hex
        self.held = False

    def renew(self) -> bool:
        """Extend the lease if this holder still has it."""
        return self.held and bool(self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_seconds))

    def take(self) -> bool:
        """Take the lease if nobody holds it; whether this holder has it now."""
        self.held = bool(self.redis.set(self.key, self.token, nx=True, ex=self.ttl_seconds))
        return self.held


@contextmanager
def writeback_exclusive(
    redis: Redis, account_id: int, conversation_id: int, token: str, slots: int, ttl_seconds: int
) -> Iterator[None]:
    """Hold the conversation's write-back lock and one of the account's ``slots``, or raise :class:`Busy`."""
    conversation_lock = redis_keys.writeback_conversation(account_id, conversation_id)
    if not redis.set(conversation_lock, token, nx=True, ex=ttl_seconds):
        raise Busy(f"conversation {account_id}/{conversation_id} is being written by another job")
    slot_key = redis_keys.writeback_slots(account_id)
    slot = redis.eval(_TAKE_SLOT, 1, slot_key, slots, token, ttl_seconds)
    if not slot:
        redis.delete(conversation_lock)
        raise SlotsBusy(f"all {slots} write-back slots of account {account_id} are busy")
    try:
        yield
    finally:
        redis.delete(f"{slot_key}:{slot}")
        redis.delete(conversation_lock)
