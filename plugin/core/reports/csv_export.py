"""CSV that is safe to open in a spreadsheet.

A cell whose text starts with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which some
spreadsheets skip before looking for those) is read as a formula by Excel, LibreOffice and Google Sheets:
a label or a policy name an outsider can influence could run ``=HYPERLINK(...)`` or worse (CSV injection,
OWASP). Such cells get a leading single quote, which spreadsheets show as text. Numbers stay numbers: only
text is ever neutralised, so a negative count would pass (reports have none).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """``value`` as a spreadsheet will read it as data: text that would start a formula gets a ``'``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_lines(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The header and then each row as one CSV line (RFC 4180, CRLF), every cell neutralised; a
    generator, so a large export streams."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: Sequence[Any]) -> str:
        writer.writerow([neutralise(cell) for cell in cells])
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(columns)
    for row in rows:
        yield line(row)


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The whole CSV text of :func:`csv_lines`."""
    return "".join(csv_lines(columns, rows))
