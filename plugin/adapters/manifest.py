"""``manifest.json``: the plugin described to a helpdesk (labels, webhook events, endpoints), as shipped.

``install`` and ``uninstall`` read all of it; the rule language takes its status labels as the defaults that a
rule file's ``labels`` section overrides (passed in: the pure core reads no file).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from plugin.core.rules.model import LabelSpec
from plugin.resources import shipped


def load_manifest() -> dict[str, Any]:
    """The plugin's manifest, read afresh (callers may change their copy)."""
    return json.loads(shipped("manifest.json").read_text(encoding="utf-8"))


@cache
def manifest_labels() -> Mapping[str, LabelSpec]:
    """The status labels manifest.json declares (read once, read-only)."""
    return MappingProxyType(
        {
            status: LabelSpec(spec["title"], spec["color"], spec.get("description", ""))
            for status, spec in load_manifest()["labels"].items()
        }
    )
