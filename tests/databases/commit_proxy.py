"""A TCP proxy to a MySQL server that lets each COMMIT land and loses or holds back its answer.

It relays bytes both ways. When the client sends ``COMMIT`` (a ``COM_QUERY`` packet), the proxy
passes it on and waits for the server's answer (the commit is then applied). By default it then
closes both connections instead of relaying the answer: the client sees a lost connection during
COMMIT, as after a network failure or a proxy timeout at that moment, and cannot tell that its
rows landed. With ``hold_answer_s`` it relays the answer that much later instead: a COMMIT that
takes long (a busy server), during which the client cannot interrupt it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from types import TracebackType

_COM_QUERY = 0x03


class CommitProxy:
    def __init__(self, host: str, port: int, hold_answer_s: float | None = None) -> None:
        self._upstream = (host, port)
        self._hold = hold_answer_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.commits_dropped = 0
        self.commits_answered = threading.Semaphore(0)  # released per answer relayed late
        self.commits_seen = threading.Semaphore(0)  # released per COMMIT passed to the server
        self._lock = threading.Lock()

    def __enter__(self) -> CommitProxy:
        self._spawn(self._accept)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._listener.close()

    @staticmethod
    def _spawn(target: Callable[..., None], *args: object) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by __exit__
                return
            server = socket.create_connection(self._upstream)
            commit_sent = threading.Event()
            self._spawn(self._client_to_server, client, server, commit_sent)
            self._spawn(self._server_to_client, server, client, commit_sent)

    def _client_to_server(self, client: socket.socket, server: socket.socket,
                          commit_sent: threading.Event) -> None:
        pending = b""
        while True:
            data = _recv(client)
            if not data:
                _close(client, server)
                return
            pending += data
            while len(pending) >= 4:  # MySQL packets: 3-byte length, sequence id, payload
                size = int.from_bytes(pending[:3], "little")
                if len(pending) < 4 + size:
                    break
                packet, pending = pending[:4 + size], pending[4 + size:]
                payload = packet[4:]
                if payload[:1] == bytes([_COM_QUERY]) and \
                        payload[1:].strip().upper() == b"COMMIT":
                    commit_sent.set()  # before sending: the next bytes back are its answer
                    self.commits_seen.release()
                if not _send(server, packet):
                    _close(client, server)
                    return

    def _server_to_client(self, server: socket.socket, client: socket.socket,
                          commit_sent: threading.Event) -> None:
        while True:
            data = _recv(server)
            if not data:
                _close(client, server)
                return
            if commit_sent.is_set():  # the server answered the COMMIT: it is applied
                if self._hold is not None:
                    commit_sent.clear()
                    threading.Event().wait(self._hold)  # a slow COMMIT, as the client sees it
                    sent = _send(client, data)
                    self.commits_answered.release()
                    if sent:
                        continue
                else:
                    with self._lock:
                        self.commits_dropped += 1
                _close(client, server)
                return
            if not _send(client, data):
                _close(client, server)
                return


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
