"""Plain-text tables that line up with Chinese city names (wide characters count twice)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Sequence

from federation.clock import format_utc


def display_width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [display_width(h) for h in header]
    for row in rows:
        widths = [max(w, display_width(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell + " " * (w - display_width(cell)) for cell, w in zip(cells, widths, strict=True)
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def ago(stamp: dt.datetime, now: dt.datetime) -> str:
    """How long ago, for people: seconds, then minutes, then the timestamp itself."""
    seconds = max(0, int((now - stamp).total_seconds()))
    if seconds < 120:
        return f"{seconds}s ago"
    if seconds < 7200:
        return f"{seconds // 60}m ago"
    return format_utc(stamp)
