"""A plain install works without the checkout: ``pip install .`` into a fresh virtualenv, then the commands
run from another folder with the files the package carries (manifest, rule schema, shipped and demo rules,
templates, static files)."""

from __future__ import annotations

import json
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "chatwoot"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the project installed from the checkout, not in editable mode."""
    environment = tmp_path_factory.mktemp("plain-install") / "venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    result = subprocess.run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return environment


def run(environment: Path, folder: Path, *arguments: str) -> subprocess.CompletedProcess:
    """Run a program of the virtualenv in *folder*, with an environment that names no setting or checkout."""
    return subprocess.run(
        [environment / "bin" / arguments[0], *arguments[1:]],
        cwd=folder,
        env={"PATH": f"{environment / 'bin'}:/usr/bin:/bin", "HOME": str(folder)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_installed_package_carries_its_files(installed: Path, tmp_path: Path) -> None:
    script = (
        "import json, plugin.resources as r, plugin.web as w; from pathlib import Path; "
        "print(json.dumps([str(r.shipped('manifest.json')), str(r.shipped('rules', 'sla-rules.schema.json')), "
        "str(r.shipped('demo', 'rules')), str(Path(w.__file__).parent.parent / 'templates' / 'reports.html'), "
        "str(Path(w.__file__).parent.parent / 'static' / 'sidebar.js')]))"
    )
    result = run(installed, tmp_path, "python", "-c", script)
    assert result.returncode == 0, result.stderr
    paths = [Path(path) for path in json.loads(result.stdout)]
    for path in paths:
        assert path.exists(), path
        assert ROOT not in path.parents, f"{path} is read from the checkout, not the installed package"
    assert sorted(path.name for path in paths[2].glob("*.json")) == ["10-demo.json"]


def test_rules_check_uses_the_shipped_rules_from_any_folder(installed: Path, tmp_path: Path) -> None:
    result = run(installed, tmp_path, "sla-plugin", "rules", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 files" in result.stdout


def test_replay_a_fixture_from_another_folder(installed: Path, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    names = ("conversation_created", "message_created-incoming", "message_created-outgoing")
    lines = [json.dumps(json.loads((FIXTURES / f"{name}.json").read_text())) for name in names]
    events.write_text("\n".join(lines) + "\n")
    result = run(installed, tmp_path, "sla-plugin", "replay", str(events), "--at", "2026-01-14T12:00:00Z")
    assert result.returncode == 0, result.stderr
    [output] = [json.loads(line) for line in result.stdout.splitlines()]
    assert (output["account_id"], output["conversation_id"]) == (1, 87)
    assert output["policy"] is not None  # the shipped rules give every conversation a policy
    assert output["metrics"]["first_response"]["stopped_at"] == "2026-01-14T09:42:10Z"


def test_dev_help_from_another_folder(installed: Path, tmp_path: Path) -> None:
    result = run(installed, tmp_path, "sla-plugin", "dev", "--help")
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout


def test_the_installed_package_is_not_the_checkout(installed: Path) -> None:
    # The tests above prove nothing if the fresh environment imported the checkout instead.
    site = subprocess.run(
        [installed / "bin" / "python", "-c", "import plugin; print(plugin.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed,
        check=True,
    ).stdout.strip()
    assert Path(site).is_relative_to(installed), site
