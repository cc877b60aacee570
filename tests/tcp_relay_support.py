"""A TCP relay for tests: a database or relay "restarting" (``cut`` then ``restore``) without touching the
real server, and namespaces reaching a server on this machine's loopback."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence


class TcpRelay:
    """Listens on one port of each of ``hosts`` and relays every connection to ``target``.

    :meth:`cut` drops every connection and refuses new ones until :meth:`restore`, on the same port: what
    clients see of a server restart. A client's side closing closes the server's (so a dead node's
    database sessions end, and their row locks go)."""

    def __init__(self, target: tuple[str, int], hosts: Sequence[str] = ("127.0.0.1",)) -> None:
        self.target = target
        self.hosts = tuple(hosts)
        self.port = 0  # the kernel picks it at the first listen; kept across cuts
        self._lock = threading.Lock()
        self._listeners: list[socket.socket] = []
        self._sockets: set[socket.socket] = set()
        self.restore()

    @property
    def address(self) -> str:
        return f"{self.hosts[0]}:{self.port}"

    def restore(self) -> None:
        with self._lock:
            if self._listeners:
                return
            for host in self.hosts:
                listener = socket.socket()
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind((host, self.port))
                listener.listen(128)
                self.port = int(listener.getsockname()[1])
                self._listeners.append(listener)
            listeners = list(self._listeners)
        for listener in listeners:
            threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listeners, self._listeners = self._listeners, []
            sockets, self._sockets = self._sockets, set()
        for listener in listeners:
            with contextlib.suppress(OSError):  # wakes the thread blocked in accept()
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    stop = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if listener not in self._listeners:
                    client.close()
                    server.close()
                    return
                self._sockets |= {client, server}
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # One side gone: shut both, which ends the opposite pipe too.
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
