"""The one clock: injectable, so that expiry and publicity periods can be tested."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

# Dates of the domain (listing days, publicity periods, birth dates) are days in China.
CHINA_TZ = dt.timezone(dt.timedelta(hours=8), "CST")


def china_date(now: dt.datetime) -> dt.date:
    """The calendar date in China at ``now``."""
    if not isinstance(now, dt.datetime) or now.tzinfo is None:
        raise ValueError("need a timezone-aware datetime")
    return now.astimezone(CHINA_TZ).date()


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current time, timezone-aware, in UTC."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


class FixedClock:
    """A clock for tests: stands still until moved."""

    def __init__(self, at: dt.datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs a timezone-aware datetime")
        self._at = at

    def now(self) -> dt.datetime:
        return self._at

    def advance(self, delta: dt.timedelta) -> None:
        self._at += delta


def parse_utc(text: str) -> dt.datetime:
    """Parse an RFC 3339 timestamp in UTC (``2026-12-02T06:00:00Z``)."""
    if not text.endswith("Z"):
        raise ValueError(f"timestamp {text!r} must be in UTC and end with 'Z'")
    value = dt.datetime.fromisoformat(text[:-1] + "+00:00")
    return value.astimezone(dt.UTC)


def format_utc(value: dt.datetime) -> str:
    """Format as RFC 3339 UTC with second precision, the form used in signed documents."""
    if value.tzinfo is None:
        raise ValueError("refusing to format a naive datetime")
    return value.astimezone(dt.UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
