"""Minimal raw App2App clients for tests and benchmarks, for both protocol generations.

:class:`RawClient` wraps python-socketio 5's ``AsyncClient`` (``generation="EIO4"``) or
``socketio_v4``'s ``AsyncClient`` (``generation="EIO3"``) with exactly the protocol of
PROTOCOL.md and nothing clever: connect with Basic auth and tuning in the query, wait
for the namespace, emit with or without ack, and queue whatever the server sends
(``data``/``message`` deliveries, ``delivery-report``, ``exception``).

It is deliberately independent of the project's own client package, so the emulator's
tests check the wire, not our client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import socketio
import socketio_v4

from airflow_provider_app2app.protocol.endpoint import basic_auth_header

NAMESPACE = "/api/v1"
Generation = Literal["EIO3", "EIO4"]
GENERATIONS: tuple[Generation, ...] = ("EIO4", "EIO3")


class ConnectRefused(Exception):
    """The server refused the namespace connection; ``reason`` is what it said."""

    def __init__(self, reason: object) -> None:
        super().__init__(f"connection refused: {reason!r}")
        self.reason = reason

    @property
    def text(self) -> str:
        """The reason as text, whatever shape the generation delivered it in."""
        reason = self.reason
        if isinstance(reason, Mapping) and "message" in reason:
            return str(reason["message"])
        if isinstance(reason, tuple | list) and len(reason) == 1:
            return str(reason[0])
        return str(reason)


@dataclass
class Delivery:
    """One delivered message as received: the event name and its three arguments."""

    event: str
    payload: Any
    key: Any
    timestamp: Any


@dataclass
class RawClient:
    """One Socket.IO connection to an App2App endpoint.

    :param base_url: ``http://host:port`` of the emulator.
    :param username: app credential username (``None`` sends no Authorization header).
    :param password: app credential password.
    :param generation: ``"EIO4"`` (python-socketio 5) or ``"EIO3"`` (``socketio_v4``).
    :param tuning: handshake query parameters (``auto_commit``, ``read_ahead``, ...).
    :param basic_prefix: send ``Basic <b64>`` (``True``) or just ``<b64>`` (the doc page).
    :param transports: Engine.IO transports; websocket only by default (fast).
    :param authorization: an explicit Authorization header value (overrides the above).
    """

    base_url: str
    username: str | None
    password: str | None = None
    generation: Generation = "EIO4"
    tuning: Mapping[str, object] = field(default_factory=dict)
    basic_prefix: bool = True
    transports: Sequence[str] = ("websocket",)
    authorization: str | None = None
    deliveries: asyncio.Queue[Delivery] = field(default_factory=asyncio.Queue)
    reports: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    exceptions: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    sio: Any = None

    def _headers(self) -> dict[str, str]:
        if self.authorization is not None:
            return {"Authorization": self.authorization}
        if self.username is None:
            return {}
        header = basic_auth_header(self.username, self.password or "")
        return {"Authorization": header if self.basic_prefix else header.split(" ", 1)[1]}

    def _url(self) -> str:
        query = {
            k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in self.tuning.items()
        }
        return f"{self.base_url}?{urlencode(query)}" if query else self.base_url

    async def connect(self, timeout: float = 10) -> RawClient:
        """Connect and wait until the ``/api/v1`` namespace is accepted.

        :raises ConnectRefused: when the server refuses, with its reason.
        """
        legacy = self.generation == "EIO3"
        self.sio = (
            socketio_v4.AsyncClient(reconnection=False)
            if legacy
            else socketio.AsyncClient(reconnection=False)
        )
        outcome: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def settle(value: object) -> None:
            if not outcome.done():
                outcome.set_result(value)

        async def on_connect(*_: Any) -> None:
            settle(None)

        async def on_connect_error(*args: Any) -> None:
            settle(ConnectRefused(args[0] if len(args) == 1 else args))

        for event in ("data", "message"):
            self.sio.on(event, self._delivery_handler(event), namespace=NAMESPACE)
        self.sio.on("delivery-report", self._queue_handler(self.reports), namespace=NAMESPACE)
        self.sio.on("exception", self._queue_handler(self.exceptions), namespace=NAMESPACE)
        self.sio.on("connect", on_connect, namespace=NAMESPACE)
        self.sio.on("connect_error", on_connect_error, namespace=NAMESPACE)
        try:
            await self.sio.connect(
                self._url(),
                headers=self._headers(),
                transports=list(self.transports),
                namespaces=[NAMESPACE],
            )
        except (socketio.exceptions.ConnectionError, socketio_v4.exceptions.ConnectionError):
            if not outcome.done():
                raise
        result = await asyncio.wait_for(outcome, timeout)
        if isinstance(result, ConnectRefused):
            await self.disconnect()
            raise result
        return self

    def _delivery_handler(self, event: str) -> Any:
        async def handler(*args: Any) -> None:
            padded = [*args, None, None, None]
            await self.deliveries.put(Delivery(event, padded[0], padded[1], padded[2]))

        return handler

    @staticmethod
    def _queue_handler(queue: asyncio.Queue[Any]) -> Any:
        async def handler(*args: Any) -> None:
            await queue.put(args[0] if len(args) == 1 else args)

        return handler

    async def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        """Emit with an ack and return the ack's arguments (a tuple when several)."""
        return await self.sio.call(event, args, namespace=NAMESPACE, timeout=timeout)

    async def emit(self, event: str, *args: Any) -> None:
        """Emit without an ack."""
        await self.sio.emit(event, args, namespace=NAMESPACE)

    async def subscribe(self, *uris: str) -> Any:
        """``subscribe([uris])``; returns the ack ``(err, result)``."""
        return await self.call("subscribe", list(uris))

    async def produce(self, message: Any, key: Any = None) -> Any:
        """``produce(message, key)``; returns the ack ``(err, result)``."""
        if key is None:
            return await self.call("produce", message)
        return await self.call("produce", message, key)

    async def commit(self) -> None:
        """``commit()``."""
        await self.emit("commit")

    async def next_delivery(self, timeout: float = 5) -> Delivery:
        """The next delivered message (``data`` or ``message``)."""
        return await asyncio.wait_for(self.deliveries.get(), timeout)

    async def next_report(self, timeout: float = 5) -> Any:
        """The next ``delivery-report`` payload."""
        return await asyncio.wait_for(self.reports.get(), timeout)

    async def next_exception(self, timeout: float = 5) -> Any:
        """The next ``exception`` payload."""
        return await asyncio.wait_for(self.exceptions.get(), timeout)

    async def no_delivery(self, within: float = 0.3) -> bool:
        """``True`` when nothing is delivered within ``within`` seconds."""
        try:
            await asyncio.wait_for(self.deliveries.get(), within)
        except asyncio.TimeoutError:
            return True
        return False

    @property
    def connected(self) -> bool:
        """Whether the socket is connected."""
        return bool(self.sio is not None and self.sio.connected)

    async def disconnect(self) -> None:
        """Disconnect (idempotent)."""
        if self.sio is not None:
            with contextlib.suppress(Exception):
                await self.sio.disconnect()


def proven(sender: str, recipient: str, content: Any, signature: Any = None) -> dict[str, Any]:
    """A produce payload in the proven (nested ``headers``) dialect."""
    headers: dict[str, Any] = {"from": sender, "to": recipient}
    if signature is not None:
        headers["signature"] = signature
    return {"headers": headers, "content": content}


def documented(sender: str, recipient: str, content: Any, signature: Any = None) -> dict[str, Any]:
    """A produce payload in the documented (flat) dialect."""
    message: dict[str, Any] = {"from": sender, "to": recipient, "content": content}
    if signature is not None:
        message["signature"] = signature
    return message
