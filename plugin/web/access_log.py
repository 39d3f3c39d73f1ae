"""gunicorn's access log for ``sla-plugin serve``: one line per request, whatever the request's path says.

gunicorn writes the path decoded (``%(U)s`` is ``PATH_INFO``), so ``/healthz%0A1.2.3.4 "GET /admin" 200``
printed a second, forged line. Here the characters that could break or fake a line (control characters,
quotes, backslashes) are written percent-encoded, as they arrived.
"""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def printable_path(path: str | None) -> str:
    """*path* with every character that could break or forge a log line percent-encoded."""
    if not path:
        return "-"
    return _UNSAFE.sub(lambda found: f"%{ord(found.group()):02X}", path)


class AccessLogger(Logger):
    """gunicorn's logger with the path atom (``%(U)s``) made printable."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["U"] = printable_path(atoms.get("U"))
        return atoms
