"""Fixtures of the end-to-end tests (the helpers live in e2e_helpers)."""

from e2e_helpers import instance, mailstack_env

__all__ = ["instance", "mailstack_env"]
