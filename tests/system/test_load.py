"""A short load run on loopback (about ten seconds): gunicorn (2 workers) and two ``sla-plugin worker``
processes take realistic mixed webhook traffic from several keep-alive clients at once.

Asserts what must hold under load, never how fast: no 5xx, every delivery answered 202 was processed (the
store equals a replay of the same bodies, labels and notes right), the queue drained. The figures it prints
(requests/s, ack latency) are for reading; the long version with ratios is ``bench/load_bench.py``.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter

import requests

from plugin.adapters.store import Store
from plugin.demo.helpdesk import chatwoot_headers

from faults import (
    API_TOKEN,
    Traffic,
    all_processed,
    child_environment,
    fake_helpdesk_server,
    settled,
    start_gunicorn,
    start_worker,
    stop_process,
    verify,
    wait_until,
    write_rules,
)

SECRET = "whsec-load-7c6b5a4d3e"
CLIENTS = 8
CONVERSATIONS = 100
TIME_LIMIT_SECONDS = 12


def signed(body: bytes, delivery: str) -> dict:
    return chatwoot_headers(body, SECRET, delivery_id=delivery)


def test_mixed_webhook_traffic_under_load_loses_nothing(tmp_path, redis_server, redis):
    rules_dir = write_rules(tmp_path / "rules")
    database_url = f"sqlite:///{tmp_path / 'sla.sqlite3'}"
    with fake_helpdesk_server() as helpdesk:
        environment = child_environment(
            REDIS_URL=redis_server.url,
            DATABASE_URL=database_url,
            SLA_RULES_DIR=str(rules_dir),
            CHATWOOT_URL=helpdesk.url,
            CHATWOOT_ACCOUNT_ID="1",
            CHATWOOT_API_TOKEN=API_TOKEN,
            CHATWOOT_WEBHOOK_SECRET=SECRET,
            SLA_CLAIM_IDLE_SECONDS="5",
            SLA_LOG_LEVEL="WARNING",
        )
        workers = [start_worker(environment, tmp_path / f"worker-{number}.log") for number in range(2)]
        web, port = start_gunicorn(environment, tmp_path / "web.log")
        url = f"http://127.0.0.1:{port}/webhooks/chatwoot"
        conversations = Traffic().conversations(CONVERSATIONS)
        statuses: Counter = Counter()
        accepted: list[bytes] = []
        latencies: list[float] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + TIME_LIMIT_SECONDS

        def client(number: int) -> None:
            # Each client owns some conversations and sends their events in order, like a helpdesk would;
            # every fifth delivery is sent twice (a retry), and some requests are bad on purpose.
            session = requests.Session()
            mine_statuses, mine_accepted, mine_latencies = Counter(), [], []
            for index in range(number, len(conversations), CLIENTS):
                for step, body in enumerate(conversations[index]):
                    if time.monotonic() > stop_at:
                        break
                    delivery = f"load-{index}-{step}"
                    for _ in range(2 if step % 5 == 0 else 1):
                        started = time.perf_counter()
                        response = session.post(url, data=body, headers=signed(body, delivery), timeout=10)
                        mine_latencies.append(time.perf_counter() - started)
                        mine_statuses[response.status_code] += 1
                        if response.status_code == 202 and response.json()["status"] == "queued":
                            mine_accepted.append(body)
                if index % 7 == 0:
                    bad = session.post(url, data=b"{not json", headers=signed(b"{not json", f"bad-{index}"), timeout=10)
                    forged = session.post(
                        url, data=conversations[index][0], headers={**signed(b"other", f"forged-{index}")}, timeout=10
                    )
                    mine_statuses[bad.status_code] += 1
                    mine_statuses[forged.status_code] += 1
            with lock:
                statuses.update(mine_statuses)
                accepted.extend(mine_accepted)
                latencies.extend(mine_latencies)

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=TIME_LIMIT_SECONDS + 30)
            elapsed = time.monotonic() - started
            assert not any(thread.is_alive() for thread in threads)
            store = Store.from_url(database_url)
            wait_until(
                lambda: all_processed(store, accepted, helpdesk.helpdesk),
                90,
                "every accepted delivery is processed and written back",
            )
            wait_until(lambda: settled(redis), 30, "the queues drain")
        finally:
            stop_process(web)
            for worker in workers:
                stop_process(worker)
        quantiles = statistics.quantiles(latencies, n=100)
        print(
            f"load: {sum(statuses.values())} requests in {elapsed:.1f} s ({sum(statuses.values()) / elapsed:.0f}/s) "
            f"from {CLIENTS} clients; answers {dict(statuses)}; ack p50 {quantiles[49] * 1000:.1f} ms, "
            f"p99 {quantiles[98] * 1000:.1f} ms"
        )
        assert not [status for status in statuses if status >= 500], statuses
        assert set(statuses) <= {202, 400, 401}, statuses
        assert len(accepted) > CONVERSATIONS  # the run got well past the first event of each conversation
        verdict = verify(store, accepted, rules_dir, helpdesk.helpdesk, "load")
        assert verdict.lost == 0, verdict.problems
