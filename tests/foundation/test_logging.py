"""Every log line is one JSON object with the mandatory fields; event lines are checked."""

import io
import logging

import orjson
import pytest

from onair.logging import MANDATORY_FIELDS, LogContractError, configure_logging, get_logger, request_context


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_plain_and_event_lines_carry_mandatory_fields() -> None:
    buf = io.StringIO()
    configure_logging("live", stream=buf)
    log = get_logger()
    log.info("service started", port=8000)
    with request_context("req-1"):
        log.info("title changed", category="media.broad_info.title", entity="ch42", title="Hello")
    plain, event = _lines(buf)
    for line in (plain, event):
        assert set(MANDATORY_FIELDS) <= set(line)
        assert line["service"] == "live"
    assert plain["request_id"] is None and plain["level"] == "info"
    assert event["request_id"] == "req-1"
    assert event["category"] == "media.broad_info.title" and event["entity"] == "ch42"
    assert str(event["ts"]).endswith("Z")


@pytest.mark.parametrize(
    ("category", "entity", "message"),
    [
        ("Media.Title", "x", "must be 2-3 dotted lowercase levels"),
        ("media", "x", "must be 2-3 dotted lowercase levels"),
        ("a.b.c.d", "x", "must be 2-3 dotted lowercase levels"),
        ("media.broad_info.title", None, "has no entity"),
    ],
)
def test_event_lines_break_loudly_when_off_contract(category: str, entity: str | None, message: str) -> None:
    configure_logging("live", stream=io.StringIO())
    with pytest.raises(LogContractError, match=message):
        get_logger().info("bad", category=category, entity=entity)


def test_stdlib_loggers_use_the_same_format() -> None:
    buf = io.StringIO()
    configure_logging("gateway", stream=buf)
    logging.getLogger("uvicorn.error").warning("listening on %s", "0.0.0.0:8000")
    (line,) = _lines(buf)
    assert line["event"] == "listening on 0.0.0.0:8000"
    assert line["level"] == "warning" and line["service"] == "gateway"
    assert set(MANDATORY_FIELDS) <= set(line)


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown log level 'LOUD'"):
        configure_logging("x", level="LOUD")


def test_loggers_that_dump_parameters_and_headers_stay_at_info_under_debug() -> None:
    buf = io.StringIO()
    configure_logging("auth", level="DEBUG", stream=buf)
    logging.getLogger("aiosqlite").debug("executing %s with %s", "INSERT ...", ("private key",))
    logging.getLogger("httpcore.http11").debug("response headers %s", [(b"set-cookie", b"token")])
    logging.getLogger("onair.auth").debug("still here")
    assert [line["event"] for line in _lines(buf)] == ["still here"]
