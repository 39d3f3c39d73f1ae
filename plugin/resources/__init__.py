"""The files the plugin ships besides its code: manifest.json, the rule files' JSON Schema, the shipped rule
files and the demo's rules.

They live at the top of the repository (``manifest.json``, ``rules/``, ``demo/rules/``), where admins and
editors look for them. Building the package (``pip install .``, a wheel) copies them into this package
(``setup.py``), so an installed plugin finds them without the checkout; an editable install has no copies
and reads the checkout's own files, so an edit to them shows at once.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGED = Path(__file__).resolve().parent
_CHECKOUT = Path(__file__).resolve().parents[2]


class ResourceMissing(FileNotFoundError):
    """A shipped file that is neither in the installed package nor in a checkout: a broken install."""


def shipped(*parts: str) -> Path:
    """The path of a shipped file or folder: ``shipped("manifest.json")``, ``shipped("rules")``,
    ``shipped("demo", "rules")``. Raises :class:`ResourceMissing` when it is nowhere to be found."""
    for root in (_PACKAGED, _CHECKOUT):
        if (root / "manifest.json").is_file():
            path = root.joinpath(*parts)
            if path.exists():
                return path
            raise ResourceMissing(f"{path} is missing from the plugin's files; reinstall the plugin")
    raise ResourceMissing(f"the plugin's files (manifest.json, rules/) are missing from {_PACKAGED}; reinstall it")
