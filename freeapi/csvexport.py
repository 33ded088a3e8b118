"""CSV for the admin exports (GET /admin/requests?format=csv, GET /admin/spend?format=csv):
RFC 4180 quoting by the csv module, and cells a spreadsheet would run as a formula made
inert. Model and key names are client data: a name like `=HYPERLINK(...)` must open as
text, so a string starting with = + - @ (also after blanks or line breaks, which some
spreadsheets trim on import), a tab or a carriage return gets a leading apostrophe.
Numbers are written as numbers (a negative one is not a formula)."""

from __future__ import annotations

import csv
import io
import time

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(_FORMULA_START) or \
        text.lstrip().startswith(_FORMULA_START) else text


def lines(rows) -> str:
    """The rows (each a sequence of values) as CSV text, CRLF-terminated."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


def attachment(what: str, now: float | None = None) -> str:
    """A Content-Disposition naming the file by what it holds and when it was made."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f'attachment; filename="freeapi-{what}-{stamp}.csv"'
