"""Structured logs: one JSON object per line, or text with key=value fields."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from federation.clock import parse_utc
from node.logs import JsonFormatter, TextFormatter


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, logging.Handler, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("creditnet.test.logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, handler, stream
    logger.handlers.clear()
    logger.propagate = True


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_json_one_object_per_line(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter("370200"))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    logger.info("manifest adopted %s", "v4", extra={"fields": {"version": 4}})
    logger.warning("peer down\nsecond line")
    after = dt.datetime.now(dt.UTC)
    first, second = json_lines(stream)  # exactly two lines, even with a newline in a message
    assert set(first) == {"ts", "level", "city", "logger", "msg", "version"}
    assert first["level"] == "info"
    assert first["logger"] == "creditnet.test.logs"
    assert first["msg"] == "manifest adopted v4"
    assert first["version"] == 4
    assert first["city"] == "370200"
    assert before <= parse_utc(first["ts"]) <= after
    assert second["level"] == "warning"
    assert second["msg"] == "peer down\nsecond line"
    assert second["city"] == "370200"


def test_json_fields_merged_and_non_json_values_as_text(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter("370600"))
    when = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    logger.error("x", extra={"fields": {"at": when, "peer": "370200", "ok": False}})
    (entry,) = json_lines(stream)
    assert entry["at"] == str(when)
    assert entry["peer"] == "370200"
    assert entry["ok"] is False
    assert entry["city"] == "370600"


def test_json_fields_cannot_replace_the_standard_keys(capture: Any) -> None:
    # A call site passing {"city": peer} or {"level": ...} must not disguise the line.
    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter("370200"))
    spoof = {"ts": "1970-01-01T00:00:00Z", "level": "debug", "city": "370600"}
    logger.error("real message", extra={"fields": {**spoof, "logger": "x", "msg": "other"}})
    (entry,) = json_lines(stream)
    assert entry["level"] == "error"
    assert entry["city"] == "370200"
    assert entry["logger"] == "creditnet.test.logs"
    assert entry["msg"] == "real message"
    assert entry["ts"] != "1970-01-01T00:00:00Z"


def test_json_without_fields(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter("370200"))
    logger.debug("plain", extra={"fields": "not a dict"})
    (entry,) = json_lines(stream)
    assert set(entry) == {"ts", "level", "city", "logger", "msg"}


def test_json_includes_the_exception(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter("370200"))
    try:
        raise RuntimeError("storage went away")
    except RuntimeError:
        logger.exception("internal error", extra={"fields": {"reference": "abcd1234"}})
    (entry,) = json_lines(stream)
    assert entry["level"] == "error"
    assert entry["reference"] == "abcd1234"
    assert "Traceback" in entry["exception"]
    assert "RuntimeError: storage went away" in entry["exception"]


def test_json_keeps_chinese_readable(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(JsonFormatter("370200"))
    logger.info("青岛")
    assert "青岛" in stream.getvalue()


def test_text_appends_fields(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(TextFormatter("370200"))
    logger.info("request refused", extra={"fields": {"rpc": "Exchange", "error": "invalid"}})
    line = stream.getvalue().rstrip("\n")
    assert "\n" not in line
    assert " 370200 INFO creditnet.test.logs: request refused" in line
    assert line.endswith("request refused rpc=Exchange error=invalid")


def test_text_without_fields(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(TextFormatter("370200"))
    logger.warning("plain", extra={"fields": {}})
    logger.warning("plainer")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("WARNING creditnet.test.logs: plain")
    assert second.endswith("WARNING creditnet.test.logs: plainer")


def test_text_includes_the_exception(capture: Any) -> None:
    logger, handler, stream = capture
    handler.setFormatter(TextFormatter("370200"))
    try:
        raise ValueError("bad")
    except ValueError:
        logger.error("failed", exc_info=sys.exc_info(), extra={"fields": {"reference": "r1"}})
    text = stream.getvalue()
    assert "failed" in text
    assert "ValueError: bad" in text
    assert "reference=r1" in text
