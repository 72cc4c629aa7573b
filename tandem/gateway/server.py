"""Running the gateway: uvicorn in this process (`tandem gateway`), or in a thread (tests, `make bench`)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from tandem.data.store import Store, store_from_settings
from tandem.gateway.app import create_app
from tandem.settings import Settings


def serve(settings: Settings, store: Store | None = None, port: int | None = None) -> None:
    app = create_app(settings, store or store_from_settings(settings))
    uvicorn.run(app, host=settings.gateway_host, port=settings.gateway_port if port is None else port,
                log_level="warning", access_log=False)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ThreadedGateway:
    """A real uvicorn server on 127.0.0.1 in a daemon thread; `url` once started."""

    def __init__(self, settings: Settings, store: Store | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, store or store_from_settings(settings)), host="127.0.0.1",
                                port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> "ThreadedGateway":
        self.thread.start()
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the gateway did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
