"""Every way of running the plugin keeps event processing and write-back in separate worker pools, and
restarts a worker that exits: `dev`, the Procfile, the compose file and the systemd units.

A worker on both queues runs one job at a time, so a write-back waiting on a slow helpdesk would hold up the
events behind it (a 49 s delay was measured); the pools are `plugin.cli.main.WORKER_POOLS`.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from plugin.cli.main import WORKER_POOLS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
POOLS = {tuple(options) for options in WORKER_POOLS.values()}


def _queues(options: tuple[str, ...]) -> set[str]:
    return {options[index + 1] for index, option in enumerate(options) if option == "--queue"}


def test_the_pools_split_events_from_the_calls_to_other_hosts() -> None:
    queues = [_queues(options) for options in POOLS]
    assert {"events"} in queues
    assert all("events" not in pool or pool == {"events"} for pool in queues)
    assert set().union(*queues) == {"events", "writeback", "notifications"}


def _worker_options(command: str) -> tuple[str, ...]:
    words = shlex.split(command)
    return tuple(words[words.index("worker") + 1 :])


def test_the_procfile_runs_each_pool_and_restarts_a_worker_that_exits() -> None:
    workers = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if "sla-plugin worker" in command:
            loop = re.fullmatch(r"\s*while true; do (sla-plugin worker[^;]*); sleep \d+; done\s*", command)
            assert loop, f"the Procfile's {name} does not start its worker again when it exits: {command}"
            workers[name] = _worker_options(loop.group(1))
    assert set(workers.values()) == POOLS, workers


def test_compose_runs_each_pool_and_restarts_it() -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    commands = [json.loads(found) for found in re.findall(r'command: (\["sla-plugin", "worker".*\])', text)]
    assert {tuple(command[2:]) for command in commands} == POOLS, commands
    assert "restart: unless-stopped" in text.split("x-plugin:")[1].split("services:")[0]


def test_the_systemd_units_run_each_pool_and_restart_it() -> None:
    found = set()
    for unit in (DEPLOY / "systemd").glob("sla-plugin-*@.service"):
        text = unit.read_text()
        start = re.search(r"^ExecStart=\S*sla-plugin worker(.*)$", text, re.MULTILINE)
        assert start, unit.name
        found.add(tuple(shlex.split(start.group(1))))
        assert re.search(r"^Restart=always$", text, re.MULTILINE), unit.name
    assert found == POOLS, found
