"""RulesHolder: hot reload for long-running processes, with an injected clock (no sleeping)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from plugin.adapters.rule_files import RulesHolder
from plugin.core.rules import RulesError

GOOD = {"policies": {"p": {"first_response": "1h"}}, "rules": [{"name": "one", "when": {"all": []}, "apply": "p"}]}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def write(directory: Path, document: dict | str, name: str = "10-rules.json") -> None:
    (directory / name).write_text(document if isinstance(document, str) else json.dumps(document, indent=2))


def renamed(document: dict, name: str) -> dict:
    return {**document, "rules": [{**document["rules"][0], "name": name}]}


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_changed_file_gives_a_new_set_after_the_interval(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path, GOOD)
    holder = RulesHolder(tmp_path, min_interval_seconds=1.0, clock=clock)
    first = holder.current()
    assert first.rules[0].name == "one" and holder.error is None

    write(tmp_path, renamed(GOOD, "two"))
    clock.advance(0.5)
    assert holder.current() is first  # not checked again within the interval
    clock.advance(0.5)
    second = holder.current()
    assert second.rules[0].name == "two" and second.content_hash != first.content_hash
    clock.advance(5)
    assert holder.current() is second  # same content: not rebuilt


def test_a_broken_file_keeps_the_last_good_set_live_until_it_is_fixed(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, GOOD)
    holder = RulesHolder(tmp_path, clock=clock)
    good = holder.current()

    write(
        tmp_path,
        '{"policies": {"p": {"first_response": "1h"}},\n "rules": [{"name": "x", "apply": "nope", '
        '"when": {"all": []}}]}',
    )
    clock.advance(1)
    with caplog.at_level(logging.ERROR, logger="plugin.rules"):
        assert holder.current() is good
        clock.advance(1)
        assert holder.current() is good
    assert holder.error is not None and "10-rules.json:2: /rules/0/apply: unknown policy 'nope'" in holder.error
    status = holder.status()
    assert status["ok"] is False and status["content_hash"] == good.content_hash and status["error"] == holder.error
    # Another test may have set the root logger to INFO, so the "loaded" record can be captured too.
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.name for record in errors] == ["plugin.rules"]  # logged once per broken content
    assert "keeping the rules loaded at" in errors[0].getMessage()

    write(tmp_path, renamed(GOOD, "fixed"))
    clock.advance(1)
    assert holder.current().rules[0].name == "fixed"
    assert holder.error is None and holder.status()["ok"] is True


def test_reverting_to_the_live_content_clears_the_error(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path, GOOD)
    holder = RulesHolder(tmp_path, clock=clock)
    good = holder.current()
    write(tmp_path, "{ broken")
    clock.advance(1)
    holder.current()
    assert holder.error is not None and "not valid JSON" in holder.error
    write(tmp_path, GOOD)
    clock.advance(1)
    assert holder.current() is good and holder.error is None


def test_rules_broken_from_the_start_raise_until_fixed(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path, "{ broken")
    holder = RulesHolder(tmp_path, clock=clock)
    assert holder.status() == {"ok": False, "content_hash": None, "loaded_at": None, "error": holder.error}
    with pytest.raises(RulesError) as raised:
        holder.current()
    assert "not valid JSON" in str(raised.value)
    write(tmp_path, GOOD)
    clock.advance(1)
    assert holder.current().rules[0].name == "one"


def test_a_missing_directory_is_an_error_not_a_crash(tmp_path: Path, clock: Clock) -> None:
    holder = RulesHolder(tmp_path / "nowhere", clock=clock)
    assert holder.status()["ok"] is False and "rules directory not found" in holder.error
    (tmp_path / "nowhere").mkdir()
    clock.advance(1)
    assert holder.current().rules == ()
    assert holder.status()["ok"] is True


def test_status_reports_hash_and_load_time(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path, GOOD)
    holder = RulesHolder(tmp_path, clock=clock)
    status = holder.status()
    assert status["ok"] is True and status["error"] is None
    assert status["content_hash"] == holder.current().content_hash
    assert status["loaded_at"].endswith("Z")
    json.dumps(status)


def test_adding_and_removing_files_is_a_change(tmp_path: Path, clock: Clock) -> None:
    write(tmp_path, GOOD)
    holder = RulesHolder(tmp_path, clock=clock)
    write(
        tmp_path,
        {"policies": {"q": {"resolution": "1d"}}, "rules": [{"name": "first", "when": {"all": []}, "apply": "q"}]},
        name="05-first.json",
    )
    clock.advance(1)
    assert holder.current().rules[0].name == "first"
    (tmp_path / "05-first.json").unlink()
    clock.advance(1)
    assert holder.current().rules[0].name == "one"
