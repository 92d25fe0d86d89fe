"""The logging contract: every line is one JSON object with the same mandatory fields.

Mandatory on every line: ``ts`` (RFC 3339 UTC), ``level``, ``service``, ``event``, ``request_id``
(``null`` outside a request). A log line that *is* an event also carries ``category`` (2-3 dotted
lowercase levels, e.g. ``media.live_stream.status``) and ``entity`` (the id it is about); the
log-stream sink (``onair.logstream``) sends exactly those lines to Kafka. See docs/logging.md.

Standard-library loggers (uvicorn, aiokafka, ...) are routed through the same pipeline, so a
process writes one format only.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import uuid
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import structlog

Processor = Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]

MANDATORY_FIELDS = ("ts", "level", "service", "event", "request_id")
#: Third-party loggers whose DEBUG lines dump SQL parameters or raw HTTP headers (password hashes,
#: private keys, cookies, bearer tokens): kept at INFO or above even when a process logs at DEBUG.
LEAKY_DEBUG_LOGGERS = ("aiosqlite", "httpcore", "hpack")
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){1,2}$")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("onair_request_id", default=None)
_service = "onair"


class LogContractError(ValueError):
    """A log line breaks the logging contract (bad category, event without entity...)."""


def current_request_id() -> str | None:
    return _request_id.get()


@contextmanager
def request_context(request_id: str | None = None) -> Iterator[str]:
    """Bind a request id for the duration of a request (generated when not given)."""
    rid = request_id or uuid.uuid4().hex
    token = _request_id.set(rid)
    try:
        yield rid
    finally:
        _request_id.reset(token)


def _add_mandatory(_: Any, method: str, ed: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    ed.setdefault("service", _service)
    if "request_id" not in ed:
        ed["request_id"] = _request_id.get()
    level = ed.get("level") or method
    ed["level"] = "warning" if level == "warn" else level
    return ed


def check_event_fields(_: Any, __: str, ed: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Enforce the event part of the contract: a valid category always comes with an entity."""
    category = ed.get("category")
    if category is None:
        return ed
    if not isinstance(category, str) or not CATEGORY_RE.match(category):
        raise LogContractError(f"category {category!r} must be 2-3 dotted lowercase levels")
    if ed.get("entity") in (None, ""):
        raise LogContractError(f"log event {ed.get('event')!r} with category {category} has no entity")
    ed["entity"] = str(ed["entity"])
    return ed


def _render(_: Any, __: str, ed: MutableMapping[str, Any]) -> str:
    return orjson.dumps(ed, default=str).decode()


def configure_logging(
    service: str,
    level: str = "INFO",
    sinks: Sequence[Processor] = (),
    stream: Any = None,
) -> None:
    """Configure structlog (and stdlib logging) for this process.

    ``sinks`` are processors run after the contract checks and before rendering; each sees the
    complete event dict and must return it unchanged (the log-stream Kafka sink is one).
    """
    global _service
    _service = service
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _add_mandatory,
        structlog.processors.format_exc_info,
        check_event_fields,
    ]
    out = stream if stream is not None else sys.stdout
    structlog.configure(
        processors=[*shared, *sinks, _render],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in LEAKY_DEBUG_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))


def get_logger(name: str | None = None) -> Any:
    """A structlog logger; ``log.info("title changed", category=..., entity=..., title=...)``."""
    return structlog.get_logger(name) if name else structlog.get_logger()
