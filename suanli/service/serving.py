"""The service in a thread of this process, on a real loopback port: a replay driven from outside
the server (`suanli up --exit-when-done`) and tests talk to it over HTTP as any client does."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from suanli.spec.errors import SuanliError


def serve_in_thread(app: FastAPI) -> tuple[str, Callable[[], None]]:
    """The app (lifespan included) on a free loopback port in a thread: its URL and a stop function."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SuanliError("the service did not start (see its log)")
        thread.join(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=15)

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop
