"""Packaging step beyond pyproject.toml: the top-level shipped files become package data.

``manifest.json``, ``rules/*.json`` (with the JSON Schema) and ``demo/rules/*.json`` stay at the top of the
repository; building the package copies them into ``plugin/resources/`` (see that package's docstring), so a
plain install works from any folder. An editable install skips the copy: it reads the checkout's files.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("manifest.json", "rules/*.json", "demo/rules/*.json")


class BuildWithShippedFiles(build_py):
    """``build_py`` that also copies the shipped files into the built ``plugin/resources`` package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib, "plugin", "resources")
        for stale in ("manifest.json", "rules", "demo"):  # a file deleted since the last build must not ship
            path = target / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for pattern in SHIPPED:
            for source in sorted(Path().glob(pattern)):
                destination = target / source
                destination.parent.mkdir(parents=True, exist_ok=True)
                self.copy_file(str(source), str(destination))


setup(cmdclass={"build_py": BuildWithShippedFiles})
