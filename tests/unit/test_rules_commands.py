"""`sla-plugin rules check` and `rules explain`, run through click."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from plugin.cli.rules import rules

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parents[1] / "rules_cases"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "chatwoot"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_check_passes_the_shipped_rules(runner: CliRunner) -> None:
    result = runner.invoke(rules, ["check", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    assert "OK, 3 files, 5 rules, 5 policies, 1 calendar, 0 warnings; content hash " in result.output


def test_check_prints_file_line_pointer_message_and_fails_on_errors(runner: CliRunner) -> None:
    directory = CASES / "unknown-policy"
    result = runner.invoke(rules, ["check", str(directory)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"{directory}/10-a.json:5: /rules/0/apply: unknown policy 'gold'; known: p"
    assert lines[-1] == f"{directory}: 1 error, 0 warnings; the rules would not load"


def test_check_prints_warnings_but_passes(runner: CliRunner) -> None:
    directory = CASES / "unreachable-rule"
    result = runner.invoke(rules, ["check", str(directory)])
    assert result.exit_code == 0
    assert f"{directory}/20-b.json:3: /rules/0: warning: rule 'vip' can never match" in result.output
    assert "1 warning;" in result.output


def test_check_reads_the_directory_from_sla_rules_dir(runner: CliRunner, tmp_path: Path) -> None:
    shutil.copytree(CASES / "no-open-time", tmp_path / "broken")
    result = runner.invoke(rules, ["check"], env={"SLA_RULES_DIR": str(tmp_path / "broken")})
    assert result.exit_code == 1 and "calendar has no open time" in result.output


def test_check_defaults_to_rules_in_the_working_directory_else_the_shipped_rules(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(rules, ["check"], env={"SLA_RULES_DIR": ""})
    assert result.exit_code == 0, result.output
    assert "3 files" in result.output  # the shipped 10-high-priority, 20-product-matrix and 90-default
    shutil.copytree(CASES / "no-open-time", tmp_path / "rules")
    result = runner.invoke(rules, ["check"], env={"SLA_RULES_DIR": ""})
    assert result.exit_code == 1 and result.output.startswith("rules/10-a.json:")


def test_explain_a_fixture_payload(runner: CliRunner) -> None:
    result = runner.invoke(
        rules, ["explain", str(FIXTURES / "message_created-incoming.json"), "--rules", str(ROOT / "rules")]
    )
    assert result.exit_code == 0, result.output
    assert "event message_created of conversation 1/87 at 2026-01-14T09:00:01Z" in result.output
    assert "inbox_id in [5, 6] -> false (actual: 3)" in result.output
    assert "content contains_any_word" in result.output and "order #5531" in result.output
    assert "rule 5 'Everything else'" in result.output and "matched -> policy standard (version " in result.output


def test_explain_an_urgent_message(runner: CliRunner, tmp_path: Path) -> None:
    payload = json.loads((FIXTURES / "message_created-incoming.json").read_text(encoding="utf-8"))
    payload["content"] = "URGENT: our shop is down"
    (tmp_path / "event.json").write_text(json.dumps(payload))
    result = runner.invoke(rules, ["explain", str(tmp_path / "event.json"), "--rules", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    assert "matched -> policy high-priority" in result.output and "rule 2" not in result.output


def test_explain_when_no_rule_matches(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(rules, ["explain", str(FIXTURES / "conversation_created.json"), "--rules", str(tmp_path)])
    assert result.exit_code == 0
    assert "no rule matched" in result.output


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'{"event": "message_created"}'])
def test_explain_fails_on_a_payload_it_cannot_read(runner: CliRunner, tmp_path: Path, content: bytes) -> None:
    (tmp_path / "event.json").write_bytes(content)
    result = runner.invoke(rules, ["explain", str(tmp_path / "event.json"), "--rules", str(ROOT / "rules")])
    assert result.exit_code == 1
    assert "cannot read the payload" in result.output


def test_explain_fails_on_an_event_without_a_conversation(runner: CliRunner) -> None:
    result = runner.invoke(
        rules, ["explain", str(FIXTURES / "conversation_typing_on.json"), "--rules", str(ROOT / "rules")]
    )
    assert result.exit_code == 1 and "not a conversation or message event" in result.output


def test_explain_fails_on_broken_rules(runner: CliRunner) -> None:
    result = runner.invoke(
        rules, ["explain", str(FIXTURES / "conversation_created.json"), "--rules", str(CASES / "unknown-policy")]
    )
    assert result.exit_code == 1
    assert "10-a.json:5: /rules/0/apply: unknown policy 'gold'" in result.output
