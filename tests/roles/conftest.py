"""Fixtures of the Ansible role tests (the helpers live in roles_support)."""

from roles_support import deployment, outside, refusing_sink, roles_lock, sink

__all__ = ["deployment", "outside", "refusing_sink", "roles_lock", "sink"]
