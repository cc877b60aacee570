from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from mailstack.addresses import redact_addresses

# Keys whose values never reach a log line, whatever a caller passes.
_REDACTED_KEYS = frozenset(
    {"secret", "api_secret", "password", "authorization", "body", "html", "text", "data", "private_key"}
)


def _redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in event.keys() & _REDACTED_KEYS:
        event[key] = "[redacted]"
    return event


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact_addresses(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(item) for item in value]
    return value


def scrub_addresses(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace anything shaped like an e-mail address in every value, the formatted exception included.

    mailstack's own log calls pass ids, never addresses; this catches what they cannot control: a
    library's message, an exception quoting a relay's reply or a bad input.
    """
    for key, value in event.items():
        event[key] = _scrubbed(value)
    return event


def configure_logging(level: str = "info") -> None:
    """JSON lines on stderr, one object per event, secrets and bodies redacted, addresses scrubbed.

    Libraries' standard-library logs (uvicorn, alembic) go through the same renderer, so every line of
    the service's output is one JSON object.
    """
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                scrub_addresses,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("alembic").setLevel(logging.WARNING)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
