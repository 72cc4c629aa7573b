"""An S3 endpoint that fails the way real ones do, in front of moto's real S3 server: a TCP proxy
that forwards every request until the first read of a batch (`GET .../incoming/....parquet`), and
from then on either hangs (accepts, reads, never answers) or is down (refuses connections)."""

from __future__ import annotations

import socket
import threading


class FaultyS3:
    def __init__(self, upstream_port: int, mode: str):
        assert mode in ("hang", "down")
        self.upstream_port, self.mode = upstream_port, mode
        self.failing = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.failing.is_set() and self.mode == "down":
                client.close()
                continue
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        try:
            while data := client.recv(65536):
                first = data.split(b"\r\n", 1)[0]
                if first.startswith(b"GET ") and b"/incoming/" in first and b".parquet" in first:
                    self.failing.set()
                if self.failing.is_set():
                    upstream.close()
                    if self.mode == "down":
                        self.listener.close()  # new connections are refused from now on
                    if self.mode == "hang":
                        self.held.append(client)  # never answered, never closed
                        return
                    client.close()
                    return
                upstream.sendall(data)
        except OSError:
            pass

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()
        for s in self.held:
            s.close()
