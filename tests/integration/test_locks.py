"""The Redis locks (plugin.adapters.locks) against a real Redis: the sweeper's leader lease and the
write-back's per-conversation lock and per-account slots."""

from __future__ import annotations

import pytest

from plugin.adapters import locks, redis_keys


def test_one_lease_holder_at_a_time_and_only_the_holder_renews(redis):
    first = locks.Lease(redis, redis_keys.SWEEPER_LEADER, ttl_seconds=5)
    second = locks.Lease(redis, redis_keys.SWEEPER_LEADER, ttl_seconds=5)

    assert first.take() and first.renew()
    assert not second.take() and not second.renew()
    assert 0 < redis.ttl(redis_keys.SWEEPER_LEADER) <= 5  # a holder that dies loses the lease

    redis.delete(redis_keys.SWEEPER_LEADER)  # as if the first holder stopped renewing and the lease expired
    assert second.take()
    assert not first.renew()  # the old holder's token no longer matches: it cannot extend the new lease
    assert redis.get(redis_keys.SWEEPER_LEADER) == second.token.encode()


def test_writeback_lock_admits_one_writer_per_conversation(redis):
    with locks.writeback_exclusive(redis, 1, 7, "job-a", slots=4, ttl_seconds=60):
        assert 0 < redis.ttl(redis_keys.writeback_conversation(1, 7)) <= 60
        with (
            pytest.raises(locks.Busy, match="conversation 1/7"),
            locks.writeback_exclusive(redis, 1, 7, "job-b", slots=4, ttl_seconds=60),
        ):
            pass
        with locks.writeback_exclusive(redis, 1, 8, "job-c", slots=4, ttl_seconds=60):
            pass  # another conversation of the same account is written alongside
    # Both released on the way out: the conversations' locks and the account's slots.
    assert not redis.exists(redis_keys.writeback_conversation(1, 7), redis_keys.writeback_conversation(1, 8))
    assert redis.keys(redis_keys.writeback_slots(1) + ":*") == []


def test_writeback_slots_bound_the_writers_of_one_account(redis):
    with (
        locks.writeback_exclusive(redis, 1, 1, "job-a", slots=2, ttl_seconds=60),
        locks.writeback_exclusive(redis, 1, 2, "job-b", slots=2, ttl_seconds=60),
    ):
        with (
            pytest.raises(locks.Busy, match="all 2 write-back slots of account 1"),
            locks.writeback_exclusive(redis, 1, 3, "job-c", slots=2, ttl_seconds=60),
        ):
            pass
        assert not redis.exists(redis_keys.writeback_conversation(1, 3))  # a refused writer holds nothing
        with locks.writeback_exclusive(redis, 2, 3, "job-d", slots=2, ttl_seconds=60):
            pass  # another account has slots of its own
    with locks.writeback_exclusive(redis, 1, 3, "job-c", slots=2, ttl_seconds=60):
        pass  # the slots came back
