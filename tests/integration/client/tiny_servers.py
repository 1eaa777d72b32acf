"""Single-generation Socket.IO servers for the negotiation tests.

The emulator serves both generations on one port; these serve exactly one, like a
live service that runs only a modern or only a legacy Socket.IO server:

* ``modern``: a bare python-socketio 5 ``AsyncServer`` (Engine.IO 4 only);
* ``legacy``: a bare ``socketio_v4`` ``AsyncServer`` (Engine.IO 3 only).

They accept any credentials, answer a ``kick`` event by disconnecting the client
from the namespace, acknowledge ``subscribe`` and ``produce`` through the
acknowledgement (no server-side ``emit``, which sidesteps the legacy async server's
emit bug on Python 3.11), and run in a background thread on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import socketio
import socketio_v4
from aiohttp import web

NAMESPACE = "/api/v1"


class TinyServer:
    """A single-generation Socket.IO server on its own thread and event loop."""

    def __init__(self, generation: str) -> None:
        self.generation = generation
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"ws://127.0.0.1:{self.port}{NAMESPACE}"

    def _server(self) -> Any:
        if self.generation == "modern":
            return socketio.AsyncServer(async_mode="aiohttp")
        return socketio_v4.AsyncServer(async_mode="aiohttp")

    async def _start(self) -> None:
        sio = self._server()

        async def connect(sid: str, environ: dict[str, Any], *args: Any) -> bool:
            self.connections += 1
            return True

        async def subscribe(sid: str, destinations: Any) -> tuple[None, str]:
            return None, "Subscribed."

        async def produce(sid: str, message: Any, key: Any = None) -> tuple[None, str]:
            return None, "Message sent."

        async def kick(sid: str, *args: Any) -> None:
            # a server-initiated namespace disconnect, sent after this handler returns
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(sio.disconnect(sid, namespace=NAMESPACE))
            )

        sio.on("connect", connect, namespace=NAMESPACE)
        sio.on("kick", kick, namespace=NAMESPACE)
        sio.on("subscribe", subscribe, namespace=NAMESPACE)
        sio.on("produce", produce, namespace=NAMESPACE)
        app = web.Application()
        sio.attach(app)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self) -> TinyServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
