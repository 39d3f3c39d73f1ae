"""`sla-plugin replay` as admins and the acceptance tests use it: the contract of docs/contracts.md section 2."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from plugin.cli.main import main

RULES = {
    "policies": {
        "standard": {
            "name": "Standard",
            "first_response": "2h",
            "next_response": "2h",
            "resolution": "24h",
            "warn_before": "15m",
        }
    },
    "rules": [
        {
            "name": "Web chat",
            "when": {"field": "channel", "op": "equals", "value": "Channel::WebWidget"},
            "apply": "standard",
        }
    ],
}


@pytest.fixture
def rules_dir(tmp_path):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "rules.json").write_text(json.dumps(RULES))
    return folder


def run(tmp_path, rules_dir, lines, *arguments):
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    result = CliRunner().invoke(main, ["replay", str(events), "--rules", str(rules_dir), *arguments])
    outputs = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, outputs


def test_contract_fields_on_the_shared_fixture_timeline(tmp_path, rules_dir, fixture_payload):
    lines = [
        fixture_payload(name)
        for name in ("conversation_created", "message_created-incoming", "message_created-outgoing")
    ]
    result, [output] = run(tmp_path, rules_dir, lines, "--at", "2026-01-14T12:00:00Z")
    assert result.exit_code == 0
    assert set(output) == {"account_id", "conversation_id", "policy", "policy_version", "status", "metrics"}
    assert output["metrics"]["first_response"] == {
        "status": "hit",
        "started_at": "2026-01-14T09:00:00Z",
        "due_at": "2026-01-14T11:00:00Z",
        "stopped_at": "2026-01-14T09:42:10Z",
        "missed_at": None,
        "misses": 0,
    }
    assert output["metrics"]["resolution"]["due_at"] == "2026-01-15T09:00:00Z"
    assert output["status"] == "on_track"


def test_lines_apply_in_event_time_order_and_at_defaults_to_the_latest_event(tmp_path, rules_dir, fixture_payload):
    resolved = fixture_payload("conversation_status_changed-resolved")
    lines = [resolved, fixture_payload("message_created-outgoing"), fixture_payload("conversation_created")]
    result, [output] = run(tmp_path, rules_dir, lines)
    assert result.exit_code == 0
    assert output["status"] == "hit"  # evaluated at 11:00:00, the resolution (the first line, not the last)
    assert output["metrics"]["resolution"]["stopped_at"] == "2026-01-14T11:00:00Z"


def test_wrapped_lines_use_received_at_only_when_the_payload_states_no_time(tmp_path, rules_dir, fixture_payload):
    created = fixture_payload("conversation_created")
    wrapped = {"received_at": "2030-01-01T00:00:00Z", "payload": created}
    result, [output] = run(tmp_path, rules_dir, [wrapped])
    assert output["metrics"]["first_response"]["started_at"] == "2026-01-14T09:00:00Z"


def test_unreadable_lines_are_reported_with_their_number_and_the_rest_is_replayed(tmp_path, rules_dir, fixture_payload):
    broken = fixture_payload("message_created-incoming")
    del broken["account"]
    lines = [fixture_payload("conversation_created"), "{not json", broken, "[1, 2]"]
    result, outputs = run(tmp_path, rules_dir, lines)
    assert result.exit_code == 2
    assert len(outputs) == 1
    assert "line 2:" in result.stderr and "line 3:" in result.stderr and "line 4:" in result.stderr
    assert "account" in result.stderr


def test_unknown_events_are_ignored_silently_and_events_after_at_are_ignored(tmp_path, rules_dir, fixture_payload):
    lines = [
        fixture_payload("conversation_created"),
        {"event": "contact_created", "id": 1},
        fixture_payload("conversation_typing_on"),
        fixture_payload("message_created-outgoing"),
    ]
    result, [output] = run(tmp_path, rules_dir, lines, "--at", "2026-01-14T09:30:00Z")
    assert result.exit_code == 0 and result.stderr == ""
    assert output["metrics"]["first_response"]["status"] == "running"


def test_conversations_are_ordered_by_account_and_id_and_unmatched_ones_print_none(
    tmp_path, rules_dir, fixture_payload
):
    def created(conversation_id, account_id=1, channel="Channel::WebWidget"):
        payload = fixture_payload("conversation_created")
        payload.update(id=conversation_id, channel=channel, account={"id": account_id, "name": "x"})
        return payload

    lines = [created(100), created(9, account_id=2), created(20, channel="Channel::Email")]
    result, outputs = run(tmp_path, rules_dir, lines)
    assert [(o["account_id"], o["conversation_id"]) for o in outputs] == [(1, 20), (1, 100), (2, 9)]
    assert outputs[0] == {
        "account_id": 1,
        "conversation_id": 20,
        "policy": None,
        "policy_version": None,
        "status": "none",
        "metrics": {},
    }


def test_a_bad_at_is_refused(tmp_path, rules_dir, fixture_payload):
    result, _ = run(tmp_path, rules_dir, [fixture_payload("conversation_created")], "--at", "yesterday")
    assert result.exit_code != 0 and "--at" in result.output + result.stderr


def _without_account(payload: dict) -> dict:
    return {key: value for key, value in payload.items() if key != "account"}


@pytest.mark.parametrize(
    "arguments, environment, account",
    [
        (["--account", "5"], {}, 5),
        ([], {"CHATWOOT_ACCOUNT_ID": "9"}, 9),
        (["--account", "5"], {"CHATWOOT_ACCOUNT_ID": "9"}, 5),
    ],
)
def test_conversation_events_without_account_take_the_install_account(
    tmp_path, rules_dir, fixture_payload, monkeypatch, arguments, environment, account
):
    # Conversation webhooks of Chatwoot before v4.14.2 name no account; message webhooks always do.
    monkeypatch.delenv("CHATWOOT_ACCOUNT_ID", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    created = _without_account(fixture_payload("conversation_created"))
    resolved = _without_account(fixture_payload("conversation_status_changed-resolved"))
    result, outputs = run(tmp_path, rules_dir, [created, resolved], *arguments)
    assert result.exit_code == 0, result.output
    assert [(output["account_id"], output["conversation_id"]) for output in outputs] == [(account, 87)]
    assert outputs[0]["status"] == "hit"


def test_conversation_events_without_account_and_no_install_account_are_reported(
    tmp_path, rules_dir, fixture_payload, monkeypatch
):
    monkeypatch.delenv("CHATWOOT_ACCOUNT_ID", raising=False)
    result, outputs = run(tmp_path, rules_dir, [_without_account(fixture_payload("conversation_created"))])
    assert result.exit_code == 2
    assert outputs == []
    assert "line 1" in result.stderr and "account" in result.stderr
