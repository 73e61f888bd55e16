"""Structured logs: one JSON object per line on stderr (or plain text for people).

Call sites pass context as ``extra={"fields": {...}}``. Nothing personal goes in: subject
identifiers are masked before they reach a log call.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from federation.clock import SystemClock, format_utc


class JsonFormatter(logging.Formatter):
    def __init__(self, city_code: str) -> None:
        super().__init__()
        self._city_code = city_code
        self._clock = SystemClock()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": format_utc(self._clock.now()),
            "level": record.levelname.lower(),
            "city": self._city_code,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry = {**fields, **entry}  # the standard keys always win
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self, city_code: str) -> None:
        super().__init__(f"%(asctime)s {city_code} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        return text


def configure_logging(*, city_code: str, level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(city_code) if fmt == "json" else TextFormatter(city_code))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # grpc's own asyncio logger is chatty about cancelled calls at shutdown.
    logging.getLogger("grpc").setLevel(logging.WARNING)
    # Alembic announces every (no-op) migration check at start-up.
    logging.getLogger("alembic").setLevel(logging.WARNING)
