"""The HTTP API: Mailjet Send API v3.1 compatible sending, message status, sandbox outbox, operations."""

from ._app import create_app
from ._automation import make_sender

__all__ = ["create_app", "make_sender"]
