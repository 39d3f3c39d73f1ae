"""The repository stands on its own: what its files cite is in the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Documents that live outside the repository; the design is written into docs/ instead. Spelled in two
# parts so this file does not cite them itself.
OUTSIDE_DOCUMENTS = ("DESIGN" + ".md", "../" + "shared", "chatwoot" + "-notes")


def tracked_files() -> list[Path]:
    """Every file git tracks in this checkout (skips the test outside a git checkout, e.g. an sdist)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    return [ROOT / name for name in listing.decode().split("\0") if name]


def test_no_tracked_file_cites_a_document_outside_the_repository() -> None:
    citations = []
    for path in tracked_files():
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            citations += [f"{path.relative_to(ROOT)}:{number}: {name}" for name in OUTSIDE_DOCUMENTS if name in line]
    assert citations == [], "cite docs/ instead:\n" + "\n".join(citations)


# A path into the repository as the documentation writes it: `plugin/jobs/drain.py`, `rules/*.json`.
DOCUMENTED_PATH = re.compile(
    r"(?<![\w/.$-])((?:plugin|connectors|rules|tests|bench|deploy|docs|bin|demo|\.ci)/[\w./*-]*)"
)


def documentation() -> list[Path]:
    """The pages people read: the README, CONTRIBUTING and everything in docs/."""
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").iterdir())]


def test_every_path_the_documentation_names_exists() -> None:
    missing = []
    for page in documentation():
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
            for match in DOCUMENTED_PATH.finditer(line):
                path = match.group(1).rstrip(".")
                if not any(ROOT.glob(path)) and not (ROOT / f"{path}.py").is_file():  # a module, as in diagrams
                    missing.append(f"{page.relative_to(ROOT)}:{number}: {path}")
    assert missing == [], "paths named in the documentation that do not exist:\n" + "\n".join(missing)


def test_every_docs_page_a_tracked_file_cites_exists() -> None:
    missing = []
    for path in tracked_files():
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        for page in sorted(set(re.findall(r"(?<![\w/])docs/[\w-]+\.(?:md|yaml)", text))):
            if not (ROOT / page).is_file():
                missing.append(f"{path.relative_to(ROOT)}: {page}")
    assert missing == [], "\n".join(missing)
