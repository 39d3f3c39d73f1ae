"""What ``sla-plugin serve`` and ``dev`` leave on the machine: no gunicorn control socket under the user's
home, and no helpdesk registration when ``dev`` cannot have its port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from plugin.adapters.services import pick_free_port
from plugin.cli.main import main

from faults import stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_serve_starts_gunicorn_without_a_control_socket_under_home(tmp_path: Path, redis_server) -> None:
    home = tmp_path / "home"
    home.mkdir()
    environment = {name: value for name, value in os.environ.items() if name != "XDG_RUNTIME_DIR"}
    environment.update(
        HOME=str(home),
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'sla.sqlite3'}",
        SLA_RULES_DIR=str(ROOT / "rules"),
        SLA_WEBHOOK_TOKEN="a-url-token",  # serve refuses to start without a webhook credential
        # gunicorn says at debug level whether it started its control socket (after its workers).
        GUNICORN_CMD_ARGS="--log-level debug",
    )
    log_path = tmp_path / "serve.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "plugin.cli", "serve", "--port", str(pick_free_port()), "--workers", "1"],
            env=environment,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # stop_process signals the whole group: gunicorn and its workers
        )
    try:
        wait_until(lambda: "Control socket" in log_path.read_text(), 30, "gunicorn decides about its control socket")
        assert "Control socket disabled" in log_path.read_text()
        assert not (home / ".gunicorn").exists()
        assert not list(tmp_path.rglob("*.ctl"))
    finally:
        stop_process(process)


def test_dev_refuses_a_busy_port_before_it_registers_anything(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for demo in ("--demo", "--no-demo"):
            result = CliRunner().invoke(main, ["dev", "--port", str(port), demo], env={"CHATWOOT_URL": ""})
            assert result.exit_code == 1, result.output
            assert f"port {port} on 127.0.0.1 is in use" in result.output
            assert "helpdesk on" not in result.output  # the demo helpdesk was never started nor installed into
            assert "sla-plugin dev: web on" not in result.output  # no process was started
    assert not (tmp_path / "instance").exists()


def test_dev_starts_a_worker_that_exits_again(tmp_path: Path) -> None:
    from plugin.cli.main import _supervise

    runs = tmp_path / "runs"
    runs.write_text("")
    # The "worker" exits at once, leaving a mark; the "web" process ends once the worker has run twice.
    worker = [sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x')"]
    web = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import time\nwhile len(open({str(runs)!r}).read()) < 2: time.sleep(0.05)",
        ]
    )
    try:
        _supervise(web, [worker], dict(os.environ))
    finally:
        stop_process(web)
    assert runs.read_text().count("x") >= 2
