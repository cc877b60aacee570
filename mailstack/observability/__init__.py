"""Structured logs (structlog, JSON) and Prometheus metrics."""

from ._logging import configure_logging, get_logger
from ._metrics import Metrics

__all__ = ["Metrics", "configure_logging", "get_logger"]
