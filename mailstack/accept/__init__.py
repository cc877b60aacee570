"""Acceptance: the one way mail enters the pipeline, whether it came by the Send API, SMTP submission,
consent confirmations or automation. It stores and queues in the caller's transaction, and wakes the
delivery workers after the commit."""

from ._acceptor import Acceptor

__all__ = ["Acceptor"]
