"""Hosts outside this machine for tests: network namespaces joined to it by veth pairs.

The role tests' outside host and the chaos fleet's nodes are such namespaces, each with its own address,
talking to this machine at the other end of its link. Needs root and the ``ip`` command (iproute2); run
tests that use it under ``flock /tmp/mailstack-system.lock``, since the names are fixed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; raises CalledProcessError (with ip's stderr) when ``check`` and it fails."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@dataclass(frozen=True)
class VethNamespace:
    """A namespace ``name`` at ``address``, reaching this machine at ``host_address`` over a veth pair
    (``host_if`` here, ``inner_if`` inside; interface names have at most 15 characters)."""

    name: str
    host_if: str
    inner_if: str
    host_address: str
    address: str
    prefix: int = 30

    def create(self) -> None:
        """Create it, after removing what an interrupted session left under the same names."""
        self.remove()
        try:
            ip("netns", "add", self.name)
            ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.inner_if)
            ip("link", "set", self.inner_if, "netns", self.name)
            ip("addr", "add", f"{self.host_address}/{self.prefix}", "dev", self.host_if)
            ip("link", "set", self.host_if, "up")
            ip("-n", self.name, "addr", "add", f"{self.address}/{self.prefix}", "dev", self.inner_if)
            ip("-n", self.name, "link", "set", self.inner_if, "up")
            ip("-n", self.name, "link", "set", "lo", "up")
        except subprocess.CalledProcessError:
            self.remove()
            raise

    def remove(self) -> None:
        """Kill what still runs inside (an interrupted session's processes would outlive the name), then
        delete the link (both ends go) and the namespace; nothing to delete is fine."""
        for pid in ip("netns", "pids", self.name, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        ip("link", "del", self.host_if, check=False)
        ip("netns", "del", self.name, check=False)

    def command(self, *argv: str) -> list[str]:
        """``argv`` run inside the namespace (``ip netns exec`` execs it: the pid is the command's)."""
        return ["ip", "netns", "exec", self.name, *argv]


@contextmanager
def veth_namespaces(spaces: Sequence[VethNamespace]) -> Iterator[Sequence[VethNamespace]]:
    """Every namespace of ``spaces`` created, and all removed at exit, whatever happened."""
    try:
        for space in spaces:
            space.create()
        yield spaces
    finally:
        for space in reversed(spaces):
            space.remove()
