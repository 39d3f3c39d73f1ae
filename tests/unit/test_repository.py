"""The repository stands on its own: what its files cite is in the repository."""

from __future__ import annotations

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
