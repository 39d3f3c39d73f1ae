"""GET /healthz and GET /metrics against real Redis, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from pathlib import Path

from plugin.adapters import metrics, redis_keys
from plugin.adapters.services import pick_free_port


def test_healthz_is_ok_when_every_part_works(make_app, redis, database_url):
    client = make_app(DATABASE_URL=database_url).test_client()

    response = client.get("/healthz")

    body = response.get_json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["redis"]["ok"] is True
    assert body["database"]["ok"] is True
    assert body["database"]["backend"] == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    assert body["rules"]["ok"] is True
    assert body["queue"] == {"ok": True, "events": 0, "stream_length": 0, "pending": 0, "oldest_seconds": None}


def test_healthz_reports_the_queue_backlog(make_app, redis):
    client = make_app().test_client()
    for number in range(3):
        client.post(
            "/webhooks/chatwoot",
            data=json.dumps({"event": "x", "number": number}),
            headers={"Content-Type": "application/json"},
        )

    body = client.get("/healthz").get_json()

    assert body["queue"]["ok"] is True
    assert {name: body["queue"][name] for name in ("events", "stream_length", "pending")} == {
        "events": 1,
        "stream_length": 3,
        "pending": 0,
    }
    assert 0 <= body["queue"]["oldest_seconds"] < 300


def test_healthz_is_degraded_when_the_event_queue_is_stuck(make_app, redis):
    # An event added ten minutes ago (by Redis's clock) is still unprocessed: a batch that keeps failing, or
    # no worker at all. The stream entry's id is the time Redis added it.
    seconds, _ = redis.time()
    redis.xadd(redis_keys.EVENT_STREAM, {"connector": "chatwoot", "body": b"{}"}, id=f"{(seconds - 600) * 1000}-0")
    client = make_app(SLA_QUEUE_STUCK_SECONDS=300).test_client()

    response = client.get("/healthz")

    body = response.get_json()
    assert response.status_code == 503, body
    assert body["status"] == "degraded"
    assert body["queue"]["ok"] is False
    assert "stuck" in body["queue"]["error"]
    assert body["queue"]["oldest_seconds"] >= 600


def test_healthz_is_degraded_when_redis_is_down(make_app, tmp_path):
    client = make_app(REDIS_URL=f"unix://{tmp_path}/dead.sock").test_client()

    response = client.get("/healthz")

    body = response.get_json()
    assert response.status_code == 503
    assert body["status"] == "degraded"
    assert body["redis"]["ok"] is False
    assert "ConnectionError" in body["redis"]["error"]
    assert body["database"]["ok"] is True
    assert body["queue"] == {"ok": True, "events": None, "stream_length": None, "pending": None, "oldest_seconds": None}


def test_healthz_is_degraded_when_the_database_is_unreachable(make_app, redis, caplog):
    caplog.set_level(logging.DEBUG)
    password = "db-password-not-to-be-shown"
    client = make_app(DATABASE_URL=f"postgresql://sla:{password}@127.0.0.1:{pick_free_port()}/sla").test_client()

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.get_json()
    assert body["database"]["ok"] is False
    assert body["redis"]["ok"] is True
    assert password not in response.get_data(as_text=True)
    assert password not in caplog.text


def test_healthz_is_degraded_when_the_rules_are_broken(make_app, redis, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "10-broken.json").write_text("{ this is not json")
    client = make_app(SLA_RULES_DIR=rules).test_client()

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.get_json()["rules"]["ok"] is False


def _samples(text: str) -> dict[str, float]:
    """Metric lines of Prometheus' text format as {"name{labels}": value}."""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_webhooks_and_read_gauges_from_redis(make_app, redis):
    client = make_app(CHATWOOT_ACCOUNT_ID=1).test_client()
    body = (Path(__file__).parents[1] / "fixtures" / "chatwoot" / "conversation_created.json").read_bytes()
    headers = {"Content-Type": "application/json"}
    client.post("/webhooks/chatwoot", data=body, headers=headers)
    client.post("/webhooks/chatwoot", data=body, headers=headers)  # duplicate
    client.post("/webhooks/chatwoot", data=b"[]", headers=headers)
    # What workers and the sweeper record, from their own processes, through the same Redis:
    metrics.incr(redis, "sla_events_processed_total", amount=5)
    metrics.incr(redis, "sla_writeback_failures_total", {"reason": "timeout"})
    metrics.observe(redis, "sla_event_lag_seconds", 0.2)
    metrics.observe(redis, "sla_event_lag_seconds", 7.0)
    metrics.observe(redis, "sla_event_lag_seconds", 1000.0)
    redis.zadd(redis_keys.DEADLINES, {"1:7:first_response": 1_700_000_000, "1:8:resolution": 1_700_000_100})

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    samples = _samples(text)
    assert samples['sla_webhooks_received_total{connector="chatwoot",outcome="queued"}'] == 1
    assert samples['sla_webhooks_received_total{connector="chatwoot",outcome="duplicate"}'] == 1
    assert samples['sla_webhooks_received_total{connector="chatwoot",outcome="invalid"}'] == 1
    assert samples["sla_events_processed_total"] == 5
    assert samples['sla_writeback_failures_total{reason="timeout"}'] == 1
    assert samples['sla_event_lag_seconds_bucket{le="0.25"}'] == 1
    assert samples['sla_event_lag_seconds_bucket{le="10.0"}'] == 2
    assert samples['sla_event_lag_seconds_bucket{le="+Inf"}'] == 3
    assert samples["sla_event_lag_seconds_count"] == 3
    assert samples["sla_event_lag_seconds_sum"] == 1007.2
    assert samples["sla_deadlines_pending"] == 2
    assert samples['sla_queue_depth{queue="events"}'] == 1
    assert samples['sla_queue_depth{queue="writeback"}'] == 0
    assert samples["sla_event_stream_length"] == 1
    assert "# TYPE sla_event_lag_seconds histogram" in text
    assert "# TYPE sla_webhooks_received_total counter" in text
    # Every sample line is valid exposition syntax.
    sample_line = re.compile(
        r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*'
        r'="[^"]*")*\})? -?[0-9.e+]+$'
    )
    for line in text.splitlines():
        assert line.startswith("#") or sample_line.match(line), line


def test_metrics_before_anything_happened_show_zeroes(make_app, redis):
    samples = _samples(make_app().test_client().get("/metrics").get_data(as_text=True))

    assert samples["sla_webhooks_received_total"] == 0
    assert samples["sla_events_processed_total"] == 0
    assert samples["sla_event_lag_seconds_count"] == 0
    assert samples["sla_deadlines_pending"] == 0


def test_metrics_is_503_when_redis_is_down(make_app, tmp_path):
    response = make_app(REDIS_URL=f"unix://{tmp_path}/dead.sock").test_client().get("/metrics")

    assert response.status_code == 503


def test_reports_answer_on_a_fresh_database_before_any_worker_ran(make_app):
    app = make_app(SLA_ADMIN_TOKEN="admin-token-for-reports")
    response = app.test_client().get(
        "/api/reports/summary", headers={"Authorization": "Bearer admin-token-for-reports"}
    )
    assert response.status_code == 200
    assert response.get_json()["overall"]["applied"] == 0


def test_healthz_shows_a_broken_then_reloaded_rules_folder(make_app, redis, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    rule_file = rules / "10-rules.json"
    good = {"policies": {"p": {"first_response": "1h"}}, "rules": [{"name": "r", "when": {"all": []}, "apply": "p"}]}
    rule_file.write_text(json.dumps(good))
    app = make_app(SLA_RULES_DIR=rules)
    # Re-read on every request, not once a second.
    app.extensions["sla"].accounts.rules_for(None).min_interval_seconds = 0
    client = app.test_client()
    first = client.get("/healthz").get_json()["rules"]
    assert first["ok"] is True

    rule_file.write_text("{ broken")
    broken = client.get("/healthz")
    assert broken.status_code == 503
    assert broken.get_json()["rules"]["ok"] is False
    assert "10-rules.json" in broken.get_json()["rules"]["error"]

    good["policies"]["p"]["first_response"] = "2h"
    rule_file.write_text(json.dumps(good))
    reloaded = client.get("/healthz")
    assert reloaded.status_code == 200
    assert reloaded.get_json()["rules"]["ok"] is True
    assert reloaded.get_json()["rules"]["content_hash"] != first["content_hash"]


def test_healthz_does_not_wait_for_a_batch_holding_the_sqlite_write_lock(make_app, redis, tmp_path):
    database = tmp_path / "held.sqlite3"
    client = make_app(DATABASE_URL=f"sqlite:///{database}").test_client()
    assert client.get("/healthz").status_code == 200  # schema created, WAL mode on
    writer = sqlite3.connect(database, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # as a worker's batch does, for as long as it runs
    try:
        response = client.get("/healthz")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["database"]["ok"] is True
