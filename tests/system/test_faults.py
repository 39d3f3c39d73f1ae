"""Fault injection on real parts: the helpdesk API down, slow, rate limiting or refusing the token; Redis
flushed or restarted; the database unreachable; a worker killed with SIGKILL; the web process restarted.

Every test ends with the same check (:func:`tests.faults.verify`): each conversation's stored SLA equals what
``plugin.cli.replay`` computes from the same webhook bodies, every status label is right (the agent's own
label kept), and every miss has exactly one note (a miss disproved later, exactly one correction). Each prints
how many events it tried and how many it lost, which must be zero. Tests poll with deadlines; none asserts
a timing.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
import responses
import sqlalchemy as sa
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy.engine import make_url

from connectors.chatwoot.client import ChatwootClient
from plugin.adapters import redis_keys
from plugin.adapters import streams as ingest
from plugin.adapters.store import Store, outbox
from plugin.cli.main import WORKER_POOLS
from plugin.jobs import writeback
from plugin.jobs.drain import utcnow
from plugin.jobs.runtime import Runtime, current_runtime
from plugin.jobs.sweeper import Sweeper

from faults import (
    API_TOKEN,
    BASE_URL,
    RestartableRedis,
    TcpProxy,
    Traffic,
    all_processed,
    child_environment,
    duplicated_log_entries,
    enqueue_scheduled_now,
    fake_helpdesk,
    fake_helpdesk_server,
    labels_of,
    settled,
    start_gunicorn,
    start_worker,
    stop_process,
    verify,
    wait_until,
    write_rules,
)

# -- in-process: real Redis, real RQ SimpleWorker, SQLite, `responses` for the helpdesk -----------------------


@pytest.fixture
def plant(monkeypatch, tmp_path, redis_server, redis, runtime_environment):
    """A runtime on the private Redis and a SQLite file; write-back through a client whose backoff sleeps are
    recorded instead of slept, with the token held in ``plant.token`` (so a test can rotate it)."""
    rules_dir = write_rules(tmp_path / "rules")
    runtime_environment(
        DATABASE_URL=f"sqlite:///{tmp_path / 'sla.sqlite3'}",
        REDIS_URL=redis_server.url,
        SLA_RULES_DIR=str(rules_dir),
        CHATWOOT_URL=BASE_URL,
        CHATWOOT_ACCOUNT_ID="1",
        CHATWOOT_API_TOKEN=API_TOKEN,
        SLA_RECONCILE_SECONDS="0",
        SLA_NAMES_REFRESH_SECONDS="0",
    )
    sleeps: list[float] = []
    token = {"value": API_TOKEN}
    monkeypatch.setattr(
        Runtime,
        "helpdesk",
        lambda *_: ChatwootClient(BASE_URL, 1, token["value"], sleep=sleeps.append),
    )
    return SimpleNamespace(runtime=current_runtime(), rules_dir=rules_dir, sleeps=sleeps, token=token)


def submit(redis, bodies) -> None:
    for body in bodies:
        ingest.submit(redis, "chatwoot", body, received_at=datetime.now(UTC))


def work_all(redis, rounds: int = 30) -> int:
    """Real RQ workers drain both queues; scheduled retries are run as their time comes (immediately here).
    Returns how many rounds it took."""
    queues = [Queue(redis_keys.EVENTS_QUEUE, connection=redis), Queue(redis_keys.WRITEBACK_QUEUE, connection=redis)]
    for number in range(1, rounds + 1):
        SimpleWorker(queues, connection=redis).work(burst=True, logging_level="ERROR")
        if not enqueue_scheduled_now(redis) and all(queue.count == 0 for queue in queues):
            return number
    raise AssertionError(f"the queues did not settle in {rounds} rounds")


def pending_intents(runtime) -> int:
    with runtime.store.engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.count()).select_from(outbox).where(outbox.c.state.in_(("pending", "sending")))
        ).scalar()


def traffic_bodies(count: int, **options) -> list[bytes]:
    return [body for bodies in Traffic(**options).conversations(count) for body in bodies]


@pytest.mark.parametrize("fault", ["5xx", "down"])
def test_helpdesk_down_for_a_while_then_back(plant, fault):
    import responses

    bodies = traffic_bodies(10)
    helpdesk = fake_helpdesk()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk.register(mock, BASE_URL)
        helpdesk.fail_next(40, fault)  # more than a job's own attempts: RQ's retries must take over
        submit(plant.runtime.redis, bodies)
        rounds = work_all(plant.runtime.redis)
    assert helpdesk.faults_left() == 0
    print(
        f"helpdesk down for 40 calls ({fault}); settled after {rounds} worker rounds; "
        f"{len(helpdesk.calls)} answered calls in all"
    )
    assert rounds > 1  # the outage outlasted a job's own attempts
    assert pending_intents(plant.runtime) == 0
    assert verify(plant.runtime.store, bodies, plant.rules_dir, helpdesk, f"helpdesk down ({fault})").lost == 0


def test_helpdesk_slow_calls_time_out_and_nothing_is_doubled(plant):
    import responses

    bodies = traffic_bodies(10)
    helpdesk = fake_helpdesk()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk.register(mock, BASE_URL)
        # A slow helpdesk: the calls are applied, but each answer comes after the client gave up; then some
        # calls that never reach it.
        helpdesk.fail_next(6, "slow", seconds=60)
        helpdesk.fail_next(6, "down")
        submit(plant.runtime.redis, bodies)
        work_all(plant.runtime.redis)
    assert helpdesk.faults_left() == 0
    assert verify(plant.runtime.store, bodies, plant.rules_dir, helpdesk, "helpdesk slow").lost == 0


def test_helpdesk_rate_limit_retry_after_is_honoured(plant):
    import responses

    bodies = traffic_bodies(5)
    helpdesk = fake_helpdesk()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk.register(mock, BASE_URL)
        helpdesk.fail_next(3, "429", seconds=7)  # with a Retry-After, as a proxy in front of Chatwoot sends
        submit(plant.runtime.redis, bodies)
        work_all(plant.runtime.redis)
    # The client waited what the helpdesk asked for (its sleep is injected and recorded).
    assert plant.sleeps.count(7) == 3, plant.sleeps
    assert verify(plant.runtime.store, bodies, plant.rules_dir, helpdesk, "helpdesk 429").lost == 0


def test_revoked_token_stops_write_back_without_hammering_until_it_is_fixed(plant, caplog):
    import responses

    bodies = traffic_bodies(10)
    conversations = 10
    helpdesk = fake_helpdesk()
    helpdesk.replace_token("a-new-token-the-plugin-does-not-have")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk.register(mock, BASE_URL)
        with caplog.at_level(logging.ERROR):
            submit(plant.runtime.redis, bodies)
            work_all(plant.runtime.redis)
        refused = len(helpdesk.calls)
        # One refused call per conversation's job, then it stops: no retries, no hammering.
        assert 0 < refused <= conversations, helpdesk.calls
        assert all(call[2] == 401 for call in helpdesk.calls)
        assert any("refused the API token" in record.getMessage() for record in caplog.records)
        assert pending_intents(plant.runtime) > 0  # kept for when the token is fixed
        work_all(plant.runtime.redis)  # nothing is retried on its own
        assert len(helpdesk.calls) == refused
        print(f"token revoked: {refused} calls refused for {conversations} conversations, then none")

        # The operator sets the new token; once the pause after a refusal is over (simulated: its key
        # expires), the sweeper's periodic requeue delivers what waited.
        plant.token["value"] = helpdesk.api_token
        plant.runtime.redis.delete(redis_keys.writeback_auth_failed(1))
        later = datetime.now(UTC) + writeback.STALE_AFTER + timedelta(seconds=1)
        assert writeback.requeue_stale_outbox(plant.runtime, later) > 0
        work_all(plant.runtime.redis)
    assert pending_intents(plant.runtime) == 0
    assert verify(plant.runtime.store, bodies, plant.rules_dir, helpdesk, "token revoked then fixed").lost == 0


def test_redis_flush_loses_no_deadline_and_a_resent_delivery_is_processed(plant):
    import responses

    runtime = plant.runtime
    redis = runtime.redis
    traffic = Traffic()
    bodies = [body for bodies in traffic.conversations(10) for body in bodies]
    # One conversation whose at-risk instant comes a few seconds from now: the rebuilt index must fire it.
    soon = Traffic(now=datetime.now(UTC) - timedelta(minutes=50) + timedelta(seconds=4), first_conversation=5000)
    soon_bodies = soon.conversation(0, "on_track")
    soon_bodies = [soon_bodies[0]]  # created only: first response due in 1 h from its creation
    helpdesk = fake_helpdesk()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk.register(mock, BASE_URL)
        submit(redis, bodies + soon_bodies)
        work_all(redis)
        index = sorted(redis.zrange(redis_keys.DEADLINES, 0, -1, withscores=True))
        assert index

        # Events accepted but still in the stream when Redis is flushed are lost by design
        # (docs/architecture.md, "Where state lives"): the helpdesk re-sends them (or the reconciler finds
        # them). Simulate one such delivery.
        in_flight = traffic.conversation(10)
        submit(redis, in_flight)
        redis.flushall()
        assert redis.zcard(redis_keys.DEADLINES) == 0

        sweeper = Sweeper(runtime, utcnow)  # a new leader: rebuilds the index from SQL
        sweeper.step()
        rebuilt = sorted(redis.zrange(redis_keys.DEADLINES, 0, -1, withscores=True))
        assert {member for member, _ in rebuilt} >= {member for member, score in index if score > time.time()}
        submit(redis, in_flight)  # the helpdesk's re-send
        work_all(redis)

        def soon_at_risk():
            sweeper.step()
            work_all(redis)
            return runtime.store.summary((1, 5000))["status"] == "at_risk"

        wait_until(soon_at_risk, 30, "the rebuilt deadline index ticks the at-risk conversation", interval=0.5)
    assert labels_of(helpdesk, 5000) == ["billing", "sla-at-risk"]
    verdict = verify(runtime.store, bodies + in_flight + soon_bodies, plant.rules_dir, helpdesk, "redis flushed")
    assert verdict.lost == 0


# -- subprocesses: `sla-plugin worker`, gunicorn, a real HTTP fake helpdesk --------------------------------


@pytest.fixture
def helpdesk_server():
    with fake_helpdesk_server() as server:
        yield server


def worker_environment(redis_url: str, database_url: str, rules_dir: Path, helpdesk_url: str, **extra) -> dict:
    return child_environment(
        REDIS_URL=redis_url,
        DATABASE_URL=database_url,
        SLA_RULES_DIR=str(rules_dir),
        CHATWOOT_URL=helpdesk_url,
        CHATWOOT_ACCOUNT_ID="1",
        CHATWOOT_API_TOKEN=API_TOKEN,
        SLA_CLAIM_IDLE_SECONDS="1",
        **extra,
    )


def submit_retrying(redis, bodies, deadline_seconds: float = 30) -> int:
    """Submit like a helpdesk that retries on failure; returns how many submissions failed first."""
    failures = 0
    for body in bodies:
        deadline = time.monotonic() + deadline_seconds
        while True:
            try:
                ingest.submit(redis, "chatwoot", body, received_at=datetime.now(UTC))
                break
            except RedisError:
                failures += 1
                assert time.monotonic() < deadline, "Redis did not come back"
                time.sleep(0.05)
    return failures


def test_redis_stalled_while_webhooks_arrive_loses_no_retried_delivery(tmp_path, settings_factory):
    """Redis freezes while deliveries are being accepted: each answer is 503 (the client times out), and
    the helpdesk retries. Whatever Redis runs once it resumes, every delivery ends up queued exactly once."""
    from plugin.web import create_app

    deliveries = [(f"stall-{number}", body) for number, body in enumerate(traffic_bodies(4)[:12])]
    with RestartableRedis(tmp_path / "redis") as server:
        client_redis = server.connection(socket_timeout=0.5)
        app = create_app(settings_factory(REDIS_URL=server.url), redis=client_redis)
        # Connections already open when Redis freezes, as on a busy receiver: commands sent on them wait in
        # the socket and run when it resumes (a connection opened during the stall sends nothing yet).
        pool = client_redis.connection_pool
        warm = [pool.get_connection() for _ in range(len(deliveries) + 4)]
        for connection in warm:
            connection.send_command("PING")
            connection.read_response()
        for connection in warm:
            pool.release(connection)
        first, *deliveries = deliveries  # one delivery before the stall: the receiver's script is loaded
        warm_up = app.test_client().post("/webhooks/chatwoot", data=first[1], headers={"X-Chatwoot-Delivery": first[0]})
        assert warm_up.status_code == 202
        first_answers: dict[str, int] = {}
        final_answers: dict[str, str] = {}

        def deliver(delivery_id: str, body: bytes) -> None:
            client = app.test_client()
            headers = {"Content-Type": "application/json", "X-Chatwoot-Delivery": delivery_id}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # the helpdesk retries until it gets an answer below 500
                response = client.post("/webhooks/chatwoot", data=body, headers=headers)
                first_answers.setdefault(delivery_id, response.status_code)
                if response.status_code < 500:
                    final_answers[delivery_id] = response.get_json()["status"]
                    return
                time.sleep(0.2)

        senders = [threading.Thread(target=deliver, args=delivery, daemon=True) for delivery in deliveries]
        with server.stalled():
            for sender in senders:
                sender.start()
            wait_until(lambda: len(first_answers) == len(deliveries), 30, "every delivery answered while stalled")
        for sender in senders:
            sender.join(60)
        app.extensions["sla"].counters.close()
        redis = server.connection()
        queued = Counter(fields[b"delivery_id"].decode() for _, fields in redis.xrange(redis_keys.EVENT_STREAM))
    lost = [delivery_id for delivery_id, _ in deliveries if queued[delivery_id] != 1]
    refused = sum(1 for status in first_answers.values() if status == 503)
    print(
        f"[redis stalled] tried {len(deliveries)} deliveries, {refused} answered 503 and retried; "
        f"final answers {dict(Counter(final_answers.values()))}; lost or doubled: {len(lost)}"
    )
    assert refused == len(deliveries), first_answers  # the stall was real: every first answer was 503
    assert len(final_answers) == len(deliveries)
    assert lost == [], {delivery_id: queued[delivery_id] for delivery_id in lost}


def test_redis_restarted_mid_load_the_worker_reconnects(tmp_path, helpdesk_server):
    rules_dir = write_rules(tmp_path / "rules")
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    with RestartableRedis(tmp_path / "redis") as server:
        redis = server.connection(socket_timeout=5)
        worker = start_worker(
            worker_environment(server.url, database_url, rules_dir, helpdesk_server.url), tmp_path / "worker.log"
        )
        try:
            store = Store.from_url(database_url)
            traffic = Traffic()
            before = [body for bodies in traffic.conversations(15) for body in bodies]
            submit_retrying(redis, before)
            wait_until(
                lambda: all_processed(store, before, helpdesk_server.helpdesk),
                60,
                "the events before the restart are processed and written back",
            )

            server.restart(down_seconds=0.5)
            after = [body for bodies in traffic.conversations(15, start=15) for body in bodies]
            submit_retrying(redis, after)
            wait_until(
                lambda: all_processed(store, after, helpdesk_server.helpdesk),
                60,
                "the worker reconnects and processes the events sent after the restart",
            )
            assert worker.poll() is None, "the worker process died instead of reconnecting"
            wait_until(lambda: settled(redis), 30, "queues drained")
        finally:
            stop_process(worker)
        verdict = verify(store, before + after, rules_dir, helpdesk_server.helpdesk, "redis restarted")
        assert verdict.lost == 0, verdict.problems


def test_redis_stopped_while_a_job_runs_the_worker_carries_on_once_it_is_back(tmp_path, helpdesk_server):
    """Redis goes away while a write-back job waits on the helpdesk: the job fails, and so does recording its
    failure. The worker process must not exit: once Redis is back it processes what comes next."""
    rules_dir = write_rules(tmp_path / "rules")
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    log_path = tmp_path / "worker.log"
    gate, inside = threading.Event(), threading.Event()

    def held(method, path):
        if method == "POST" and not gate.is_set():  # the first write-back call waits for the test
            inside.set()
            gate.wait(60)

    helpdesk_server.helpdesk.before_call = held
    with RestartableRedis(tmp_path / "redis") as server:
        redis = server.connection(socket_timeout=5)
        worker = start_worker(worker_environment(server.url, database_url, rules_dir, helpdesk_server.url), log_path)
        try:
            traffic = Traffic()
            submit_retrying(redis, traffic.conversation(0))
            wait_until(inside.is_set, 60, "a write-back job is inside a helpdesk call")
            server.stop()
            gate.set()  # the job goes on, without Redis
            wait_until(
                lambda: worker.poll() is not None or "quitting" in log_path.read_text(),
                60,
                "the RQ worker gives up its job loop",
            )
            server.start()
            after = [body for bodies in traffic.conversations(10, start=1) for body in bodies]
            submit_retrying(redis, after)
            store = Store.from_url(database_url)
            wait_until(
                lambda: worker.poll() is None and all_processed(store, after, helpdesk_server.helpdesk),
                60,
                "the same worker process handles the events sent once Redis is back",
            )
            wait_until(lambda: settled(redis), 30, "queues drained")
        finally:
            stop_process(worker)
    verdict = verify(store, after, rules_dir, helpdesk_server.helpdesk, "redis stopped mid-job")
    assert verdict.lost == 0, verdict.problems


def test_a_stuck_helpdesk_does_not_delay_events_in_the_worker_pools_of_production(
    tmp_path, redis_server, redis, helpdesk_server
):
    """The helpdesk stops answering write-back calls: the event pool still folds new events (misses are
    still detected), and the write-back catches up once the helpdesk answers again."""
    rules_dir = write_rules(tmp_path / "rules")
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    environment = worker_environment(redis_server.url, database_url, rules_dir, helpdesk_server.url)
    gate, inside = threading.Event(), threading.Event()
    calls = []

    def stuck(method, path):
        calls.append(path)
        if not gate.is_set():
            inside.set()
            gate.wait(120)

    helpdesk_server.helpdesk.before_call = stuck
    workers = [
        start_worker(environment, tmp_path / f"worker-{pool}.log", *options) for pool, options in WORKER_POOLS.items()
    ]
    try:
        traffic = Traffic()
        first = traffic.conversation(0)
        submit(redis, first)
        wait_until(inside.is_set, 60, "a write-back job waits on the stuck helpdesk")
        later = [body for bodies in traffic.conversations(10, start=1) for body in bodies]
        submit(redis, later)
        store = Store.from_url(database_url)
        calls_until_folded = wait_until(
            lambda: all_processed(store, later) and len(calls), 60, "events are folded while the helpdesk is stuck"
        )
        # Folded while the first write-back call still waited (its client gives up after 10 s and retries):
        # a worker that also ran write-back would have been inside that job, and its retries, meanwhile.
        assert calls_until_folded == 1, calls
        gate.set()
        wait_until(lambda: all_processed(store, first + later, helpdesk_server.helpdesk), 60, "write-back catches up")
        wait_until(lambda: settled(redis), 30, "queues drained")
    finally:
        gate.set()
        for worker in workers:
            stop_process(worker)
    verdict = verify(store, first + later, rules_dir, helpdesk_server.helpdesk, "helpdesk stuck, pools apart")
    assert verdict.lost == 0, verdict.problems


# Accepted by rule files and 12-30 s or more each on short texts with a backtracking matcher.
SLOW_EXPRESSIONS = [r".*refund.*asap", r"\d+\d+\d+x", r"a*a*a*a*a*a*b", r"(a{1,2}){40}$", r"(a?){30}a{30}"]
HOSTILE_TEXTS = ("a" * 10_000, "1" * 10_000, "refund " * 1_400)


def hostile(body: bytes, number: int) -> bytes:
    """One conversation's body with what used to stall the queue: values longer than their columns, NUL
    characters and lone surrogates (on conversations 0, 4, 8...), 10 KB of text that makes backtracking
    expressions explode (1, 5, 9...)."""
    payload = json.loads(body)
    if number % 4 == 0 and payload.get("event") == "conversation_created":
        payload.update(priority="p" * 300, channel="Channel::\x00" + "c" * 200, labels=["a\x00b", "\ud800", "l" * 300])
    if number % 4 == 1 and payload.get("message_type") == "incoming":
        payload["content"] = HOSTILE_TEXTS[number % len(HOSTILE_TEXTS)]
    return json.dumps(payload).encode()


def test_hostile_values_and_slow_expressions_never_stall_the_queue(
    tmp_path, redis_server, redis, database_url, helpdesk_server
):
    rules_dir = write_rules(tmp_path / "rules")
    rules = json.loads((rules_dir / "rules.json").read_text())
    slow = {"any": [{"field": "content", "op": "matches", "value": expression} for expression in SLOW_EXPRESSIONS]}
    rules["rules"].insert(0, {"name": "Slow expressions", "when": slow, "apply": "quick"})
    (rules_dir / "rules.json").write_text(json.dumps(rules))
    conversations = Traffic().conversations(20)
    bodies = [hostile(body, number) for number, sent in enumerate(conversations) for body in sent]
    store = Store.from_url(database_url)
    store.migrate()  # as the worker does when it starts: the test reads the tables meanwhile
    worker = start_worker(
        worker_environment(redis_server.url, database_url, rules_dir, helpdesk_server.url), tmp_path / "worker.log"
    )
    try:
        submit(redis, bodies)
        wait_until(lambda: all_processed(store, bodies, helpdesk_server.helpdesk), 90, "every conversation processed")
        wait_until(lambda: settled(redis), 30, "queues drained")
        assert redis.xlen(redis_keys.DEAD_LETTERS) == 0  # made storable, not set aside
    finally:
        stop_process(worker)
    verdict = verify(
        store,
        bodies,
        rules_dir,
        helpdesk_server.helpdesk,
        f"hostile values, slow expressions ({store.engine.dialect.name})",
    )
    assert verdict.lost == 0, verdict.problems
    store.engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_database_unreachable_for_a_while_then_back(tmp_path, redis_server, redis, database_url, helpdesk_server):
    url = make_url(database_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    rules_dir = write_rules(tmp_path / "rules")
    store = Store.from_url(database_url)  # the test's own view, not through the proxy
    store.migrate()
    worker = start_worker(
        worker_environment(redis_server.url, proxied, rules_dir, helpdesk_server.url), tmp_path / "worker.log"
    )
    try:
        traffic = Traffic()
        before = [body for bodies in traffic.conversations(10) for body in bodies]
        submit(redis, before)
        wait_until(lambda: all_processed(store, before, helpdesk_server.helpdesk), 60, "processed before the cut")

        proxy.cut()
        during = [body for bodies in traffic.conversations(10, start=10) for body in bodies]
        submit(redis, during)
        failed = FailedJobRegistry(redis_keys.EVENTS_QUEUE, connection=redis)
        wait_until(lambda: failed.count > 0, 60, "a drain job fails while the database is unreachable")
        pending = redis.xpending(redis_keys.EVENT_STREAM, redis_keys.EVENT_GROUP)["pending"]
        assert pending > 0, "the entries read by the failed drain must stay pending (not acknowledged)"
        assert not all_processed(store, during)
        print(
            f"database cut: {failed.count} drain job(s) failed, {pending} entries pending, "
            f"{proxy.refused} connections refused"
        )

        proxy.restore()
        wait_until(
            lambda: all_processed(store, during, helpdesk_server.helpdesk),
            90,
            "a later drain processes the pending entries once the database is back",
        )
        wait_until(lambda: settled(redis), 30, "queues drained")
    finally:
        stop_process(worker)
        proxy.close()
        store.engine.dispose()
    verdict = verify(store, before + during, rules_dir, helpdesk_server.helpdesk, "database unreachable")
    assert verdict.lost == 0, verdict.problems


def test_worker_killed_mid_batch_a_second_worker_finishes_exactly_once(tmp_path, redis_server, redis, helpdesk_server):
    rules_dir = write_rules(tmp_path / "rules")
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    environment = worker_environment(redis_server.url, database_url, rules_dir, helpdesk_server.url)
    conversations = Traffic().conversations(120)
    bodies = [body for bodies in conversations for body in bodies]
    submit(redis, bodies)
    first = start_worker(environment, tmp_path / "worker-1.log")
    second = None
    try:
        # Kill it while a batch is read but not acknowledged.
        wait_until(
            lambda: (
                redis.xpending(redis_keys.EVENT_STREAM, redis_keys.EVENT_GROUP)["pending"] > 0
                if redis.exists(redis_keys.EVENT_STREAM) and redis.xinfo_groups(redis_keys.EVENT_STREAM)
                else False
            ),
            60,
            "the first worker reads a batch",
            interval=0.01,
        )
        stop_process(first, signal.SIGKILL)
        pending_at_kill = redis.xpending(redis_keys.EVENT_STREAM, redis_keys.EVENT_GROUP)["pending"]
        print(f"worker SIGKILLed with {pending_at_kill} entries read and not acknowledged")
        second = start_worker(environment, tmp_path / "worker-2.log")
        store = Store.from_url(database_url)
        wait_until(
            lambda: all_processed(store, bodies, helpdesk_server.helpdesk),
            120,
            "the second worker processes every event",
        )
        wait_until(lambda: settled(redis), 30, "queues drained")
    finally:
        stop_process(first, signal.SIGKILL)
        if second is not None:
            stop_process(second)
    verdict = verify(store, bodies, rules_dir, helpdesk_server.helpdesk, "worker SIGKILL")
    assert verdict.lost == 0, verdict.problems
    keys = {(1, Traffic().first_conversation + number) for number in range(len(conversations))}
    assert duplicated_log_entries(store, keys) == []


def test_web_process_restarted_under_load_loses_no_accepted_delivery(tmp_path, redis_server, redis, helpdesk_server):
    rules_dir = write_rules(tmp_path / "rules")
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    environment = worker_environment(redis_server.url, database_url, rules_dir, helpdesk_server.url)
    worker = start_worker(environment, tmp_path / "worker.log")
    web, port = start_gunicorn(environment, tmp_path / "web.log")
    bodies = [body for bodies in Traffic().conversations(60) for body in bodies]
    outcomes: dict[int, int] = {}
    refused = [0]
    done = threading.Event()

    def client() -> None:
        session = requests.Session()
        for number, body in enumerate(bodies):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    response = session.post(
                        f"http://127.0.0.1:{port}/webhooks/chatwoot",
                        data=body,
                        timeout=5,
                        headers={"Content-Type": "application/json", "X-Chatwoot-Delivery": f"delivery-{number}"},
                    )
                except requests.RequestException:
                    refused[0] += 1  # the helpdesk retries a delivery that got no answer
                    session = requests.Session()
                    time.sleep(0.05)
                    continue
                outcomes[number] = response.status_code
                if response.status_code < 500:
                    break
            time.sleep(0.002)
        done.set()

    sender = threading.Thread(target=client, daemon=True)
    try:
        sender.start()
        wait_until(lambda: len(outcomes) > len(bodies) // 3, 60, "a third of the deliveries are sent")
        stop_process(web, signal.SIGKILL)
        web, _ = start_gunicorn(environment, tmp_path / "web.log", port=port)
        assert done.wait(120), "the client finished"
        assert sorted(outcomes) == list(range(len(bodies)))
        assert set(outcomes.values()) == {202}, outcomes
        store = Store.from_url(database_url)
        wait_until(lambda: all_processed(store, bodies, helpdesk_server.helpdesk), 60, "every 202'd delivery processed")
        wait_until(lambda: settled(redis), 30, "queues drained")
    finally:
        stop_process(web)
        stop_process(worker)
    print(f"web restarted: {refused[0]} requests failed at the client during the restart and were retried")
    verdict = verify(store, bodies, rules_dir, helpdesk_server.helpdesk, "web restarted")
    assert verdict.lost == 0, verdict.problems


def test_a_label_intent_that_changes_during_a_write_back_is_not_lost(plant):
    """The intent moves from missed to on track while a job is writing: the newer one is written."""
    runtime = plant.runtime
    bodies = Traffic().conversation(1, "hit")
    events = Queue(redis_keys.EVENTS_QUEUE, connection=runtime.redis)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        helpdesk = fake_helpdesk()
        helpdesk.register(mock, BASE_URL)
        submit(runtime.redis, bodies[:1])
        SimpleWorker([events], connection=runtime.redis).work(burst=True)
        client = runtime.helpdesk()
        original = client.set_conversation_labels

        def write_while_the_rest_arrives(conversation_id, labels):
            submit(runtime.redis, bodies[1:])
            SimpleWorker([events], connection=runtime.redis).work(burst=True)
            return original(conversation_id, labels)

        client.set_conversation_labels = write_while_the_rest_arrives
        writeback.Writer(runtime, client).deliver(1, 1001)
        client.set_conversation_labels = original
        work_all(runtime.redis)
    assert labels_of(helpdesk, 1001) == ["billing", "sla-on-track"]
