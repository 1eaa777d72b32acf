"""Socket.IO for both protocol generations on one port, in front of the broker.

Every public App2App client speaks Socket.IO 2.x (Engine.IO 3); current Python clients
speak Engine.IO 4. The emulator therefore runs a python-socketio 5 ``AsyncServer``
and a ``socketio_v4`` one (with the fixes of :mod:`.eio3_compat`) side by side on one
aiohttp application and dispatches each ``/socket.io/`` request on its ``EIO`` query
parameter, which every Engine.IO request carries: ``EIO=3`` (or 2) goes to the legacy
server, anything else to the modern one.

Both servers serve the ``/api/v1`` namespace with the same handlers. The namespace
``connect`` authenticates the ``Authorization`` header (:mod:`.auth`) and reads the
tuning parameters from the handshake query; a refusal raises
``ConnectionRefusedError(reason)`` so the reason reaches the client's
``connect_error`` handler. Each accepted connection becomes a broker
:class:`~.broker.Connection` with a :class:`SocketPeer` to emit through. Handlers take
any arguments and never raise: bad input gets an ack error or is logged.

Small subclasses harden both stacks without patching the libraries: malformed
Socket.IO packets and reserved event names are dropped with one log line
(:class:`_InputGuard`); an undecodable websocket frame closes only its own session at
once instead of leaving it half-open until the ping timeout, and a long-polling
client's close answers its pending poll at once (:class:`_EngineGuard`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import engineio
import engineio_v3
import socketio
import socketio_v4
from aiohttp import web
from socketio import packet as modern_packet
from socketio_v4 import packet as legacy_packet

from airflow_provider_app2app.emulator.auth import AuthenticationError, authenticate
from airflow_provider_app2app.emulator.broker import AckResult, Broker, Connection, Generation
from airflow_provider_app2app.emulator.eio3_compat import CATCH_ALL, LegacyAsyncServer
from airflow_provider_app2app.protocol.endpoint import DEFAULT_NAMESPACE, TuningParameters
from airflow_provider_app2app.protocol.errors import EndpointError

log = logging.getLogger(__name__)

SOCKETIO_PATH = "/socket.io/"
CLOSE_TIMEOUT = 2.0
"""Seconds a stop waits for the clients' sockets to close (all at once), and again for
websockets to finish their closing handshake."""
_RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect"})


def _event_problem(data: object) -> str | None:
    """Why an incoming event packet cannot be dispatched, or ``None`` when it can."""
    if not isinstance(data, list) or not data:
        return "An event packet without an event name was ignored."
    event = data[0]
    if not isinstance(event, str):
        return f"Event names are strings; an event named {type(event).__name__} was ignored."
    if event in _RESERVED_EVENTS:
        return f"The event name {event!r} is reserved by Socket.IO; it cannot be emitted."
    return None


class _InputGuard:
    """Mixin for both Socket.IO servers: bad packets are logged in one line and dropped.

    * A packet that does not decode (bad JSON, unknown type, stray binary attachment)
      would make the library log a traceback; it is ignored with one log line.
    * A client can emit an event named ``connect`` or ``disconnect`` (the servers would
      call those handlers with the client's arguments) or name an event with a
      non-string; such packets are answered with an ack error when one was requested.
    """

    async def _handle_eio_message(self, sid: str, data: Any) -> Any:
        try:
            return await super()._handle_eio_message(sid, data)  # type: ignore[misc]
        except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
            self._binary_packet.pop(sid, None)  # type: ignore[attr-defined]
            log.info(
                "Ignored a malformed Socket.IO packet from session %s (%s: %s).",
                sid,
                type(exc).__name__,
                exc,
            )
            return None

    async def _handle_event(
        self, sid: str, namespace: str | None, id: int | None, data: Any
    ) -> Any:
        problem = _event_problem(data)
        if problem is None:
            return await super()._handle_event(sid, namespace, id, data)  # type: ignore[misc]
        log.info("%s (session %s)", problem, sid)
        if id is not None and self._is_connected(sid, namespace or "/"):
            await self._send_packet(sid, self._ack_packet(namespace, id, [problem, None]))  # type: ignore[attr-defined]
        return None

    def _is_connected(self, sid: str, namespace: str) -> bool:
        raise NotImplementedError

    def _ack_packet(self, namespace: str | None, id: int, data: list[object]) -> Any:
        raise NotImplementedError


def _guard_websocket_handler(
    handler: Callable[[Any], Awaitable[Any]], live: set[asyncio.Task[Any]]
) -> Callable[[Any], Awaitable[Any]]:
    """Wrap an Engine.IO socket's websocket handler so that a bad frame closes only it.

    Both Engine.IO servers decode websocket frames outside their error handling: an
    undecodable frame (empty, or not starting with a packet type digit) escapes as an
    exception, aiohttp logs a traceback, and the session is left open until its ping
    times out (its Socket.IO connection looks alive, and stays active for its
    destinations, for 45-60 s). Here it is logged in one line and the session closed,
    which disconnects it properly. While it runs, its task is in ``live``, so that a
    shutdown can wait for websockets to finish their closing handshake.
    """
    socket = handler.__self__  # type: ignore[attr-defined]

    async def guarded(ws: Any) -> Any:
        task = asyncio.current_task()
        if task is not None:
            live.add(task)
        try:
            return await handler(ws)
        except Exception as exc:
            log.info(
                "Closed Engine.IO session %s after an undecodable frame (%s: %s).",
                socket.sid,
                type(exc).__name__,
                exc,
            )
            socket.queue.put_nowait(None)  # stop its writer task
            await socket.close(wait=False, abort=True)
            return None
        finally:
            if task is not None:
                live.discard(task)

    return guarded


class _EngineGuard:
    """Mixin for both Engine.IO servers: prompt closes and bad websocket frames.

    * When a long-polling client sends CLOSE, the Engine.IO servers mark the socket
      closed but leave the client's pending ``GET`` waiting for packets until the ping
      timeout (45-60 s): the client's ``disconnect()`` hangs that long, and so does a
      graceful shutdown. Queueing the end-of-stream marker (``None``) right after the
      close finishes (so that a server-side CLOSE packet still goes first) answers the
      pending poll at once. A websocket's writer takes the same marker as its stop
      signal.
    * Websocket handlers are wrapped by :func:`_guard_websocket_handler`, through a
      per-server copy of the async driver table (the library itself is not patched).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.live_websockets: set[asyncio.Task[Any]] = set()
        live = self.live_websockets
        drivers = dict(self._async)  # type: ignore[has-type]
        websocket_class = drivers["websocket"]

        class GuardedWebSocket(websocket_class):  # type: ignore[misc, valid-type]
            def __init__(self, handler: Any, *rest: Any) -> None:
                super().__init__(_guard_websocket_handler(handler, live), *rest)

        drivers["websocket"] = GuardedWebSocket
        self._async = drivers

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        result = await super()._trigger_event(event, *args, **kwargs)  # type: ignore[misc]
        if event == "disconnect" and args:
            socket = self.sockets.get(args[0])  # type: ignore[attr-defined]
            if socket is not None:
                asyncio.get_running_loop().call_soon(socket.queue.put_nowait, None)
        return result


class _ModernEngineServer(_EngineGuard, engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio 4 server with :class:`_EngineGuard`."""


class _LegacyEngineServer(_EngineGuard, engineio_v3.AsyncServer):  # type: ignore[misc]
    """python-engineio-v3 server with :class:`_EngineGuard`."""


class ModernServer(_InputGuard, socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio 5 ``AsyncServer`` (Engine.IO 4) with the input guard."""

    def _engineio_server_class(self) -> type:
        return _ModernEngineServer

    def _is_connected(self, sid: str, namespace: str) -> bool:
        ns_sid = self.manager.sid_from_eio_sid(sid, namespace)
        return ns_sid is not None and bool(self.manager.is_connected(ns_sid, namespace))

    def _ack_packet(self, namespace: str | None, id: int, data: list[object]) -> Any:
        return self.packet_class(modern_packet.ACK, namespace=namespace, id=id, data=data)


class LegacyServer(_InputGuard, LegacyAsyncServer):
    """``socketio_v4`` ``AsyncServer`` (Engine.IO 3), fixed for Python 3.11, input-guarded."""

    def _engineio_v3_server_class(self) -> type:
        return _LegacyEngineServer

    def _is_connected(self, sid: str, namespace: str) -> bool:
        return bool(self.manager.is_connected(sid, namespace))

    def _ack_packet(self, namespace: str | None, id: int, data: list[object]) -> Any:
        return legacy_packet.Packet(
            legacy_packet.ACK, namespace=namespace, id=id, data=data, binary=None
        )


class SocketPeer:
    """Emits to one connection through whichever server it came in on.

    :param server: the modern or legacy ``AsyncServer``.
    :param sid: the connection's session ID in ``namespace``.
    :param namespace: the namespace, ``/api/v1``.
    """

    def __init__(self, server: Any, sid: str, namespace: str) -> None:
        self._server = server
        self._sid = sid
        self._namespace = namespace

    async def emit(self, event: str, *args: object) -> None:
        """Send ``event(*args)``; a socket that is already gone is not an error."""
        try:
            await self._server.emit(event, args, to=self._sid, namespace=self._namespace)
        except Exception as exc:
            log.debug("Could not emit %s to %s: %s", event, self._sid, exc)


Handler = Callable[..., Awaitable[Any]]


class SocketTransport:
    """Both Socket.IO servers, their handlers, and the request dispatcher.

    :param broker: the service logic every event is handed to.
    :param namespace: the Socket.IO namespace, ``/api/v1``.
    :param max_message_bytes: the largest Engine.IO message accepted (a transport limit
        well above the content limit, so that oversize content gets a clear ack error).
    """

    def __init__(
        self, broker: Broker, namespace: str = DEFAULT_NAMESPACE, max_message_bytes: int = 10**7
    ) -> None:
        self.broker = broker
        self.namespace = namespace
        options: dict[str, Any] = {
            "async_mode": "aiohttp",
            "logger": False,
            "engineio_logger": False,
            "max_http_buffer_size": max_message_bytes,
        }
        self.modern = ModernServer(namespaces=[namespace], **options)
        self.legacy = LegacyServer(**options)
        self._connections: dict[tuple[Generation, str], Connection] = {}
        self._closed = False
        self._register(self.modern, "EIO4", socketio.exceptions.ConnectionRefusedError)
        self._register(self.legacy, "EIO3", socketio_v4.exceptions.ConnectionRefusedError)

    def attach(self, app: web.Application) -> None:
        """Route ``/socket.io/`` (GET, POST, OPTIONS) of ``app`` to :meth:`handle`."""
        for method in ("GET", "POST", "OPTIONS"):
            app.router.add_route(method, SOCKETIO_PATH, self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Hand an Engine.IO request to the server of its generation."""
        eio = request.query.get("EIO")
        sid = request.query.get("sid")
        legacy = eio in ("2", "3") or (
            eio is None and sid is not None and sid in self.legacy.eio.sockets
        )
        if not legacy:
            modern: web.StreamResponse = await self.modern.handle_request(request)
            return modern
        try:
            response: web.StreamResponse = await self.legacy.handle_request(request)
        except KeyError:
            # engineio_v3 raises instead of answering a request for a session it has
            # just closed; answer like python-engineio 4 does.
            return web.Response(status=400, text="Session is disconnected")
        return response

    async def close(self) -> None:
        """Disconnect every client of both servers (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for generation, sid in list(self._connections):
            server = self.legacy if generation == "EIO3" else self.modern
            try:
                await server.disconnect(sid, namespace=self.namespace)
            except Exception as exc:
                log.debug("Could not disconnect %s: %s", sid, exc)
        closing = [
            asyncio.ensure_future(eio.disconnect(eio_sid))
            for eio in (self.modern.eio, self.legacy.eio)
            for eio_sid in list(eio.sockets)
        ]
        if closing:
            log.debug("Closing %d Engine.IO session(s).", len(closing))
            await asyncio.wait(closing, timeout=CLOSE_TIMEOUT)
        # Let websockets finish their closing handshake before the HTTP server stops
        # (which would otherwise wait for them until its shutdown timeout).
        live = self.modern.eio.live_websockets | self.legacy.eio.live_websockets
        if live:
            await asyncio.wait(live, timeout=CLOSE_TIMEOUT)
        await self.modern.shutdown()

    # -------------------------------------------------------------------- handlers

    def _register(self, server: Any, generation: Generation, refused: type[Exception]) -> None:
        namespace = self.namespace

        async def on_connect(sid: str, environ: dict[str, Any], *_: object) -> None:
            self._connect(server, generation, sid, environ, refused)

        async def on_disconnect(sid: str, *_: object) -> None:
            conn = self._connections.pop((generation, sid), None)
            if conn is not None:
                self.broker.disconnect(conn)

        def guarded(
            name: str, call: Callable[[Connection, tuple[Any, ...]], Awaitable[AckResult | None]]
        ) -> Handler:
            async def handler(sid: str, *args: Any) -> AckResult | None:
                conn = self._connections.get((generation, sid))
                if conn is None:
                    return "Not connected; connect with an app credential first.", None
                try:
                    return await call(conn, args)
                except Exception as exc:
                    log.exception("Error handling %s from %s", name, conn.label)
                    return (
                        f"The emulator failed handling {name} ({type(exc).__name__}); see its log.",
                        None,
                    )

            return handler

        async def subscribe(conn: Connection, args: tuple[Any, ...]) -> AckResult:
            return await self.broker.subscribe(conn, args[0] if args else None)

        async def produce(conn: Connection, args: tuple[Any, ...]) -> AckResult:
            if not args:
                return (
                    "produce needs a message: produce({headers: {from, to}, content}, key?).",
                    None,
                )
            return await self.broker.produce(conn, args[0], args[1] if len(args) > 1 else None)

        async def commit(conn: Connection, args: tuple[Any, ...]) -> None:
            self.broker.commit(conn)

        server.on("connect", on_connect, namespace=namespace)
        server.on("disconnect", on_disconnect, namespace=namespace)
        server.on("subscribe", guarded("subscribe", subscribe), namespace=namespace)
        server.on("produce", guarded("produce", produce), namespace=namespace)
        server.on("commit", guarded("commit", commit), namespace=namespace)

        async def unknown(event: object, sid: str, *args: Any) -> AckResult:
            conn = self._connections.get((generation, sid))
            if conn is None:
                return "Not connected; connect with an app credential first.", None
            return self.broker.unknown_event(conn, event)

        server.on(CATCH_ALL, unknown, namespace=namespace)

    def _connect(
        self,
        server: Any,
        generation: Generation,
        sid: str,
        environ: dict[str, Any],
        refused: type[Exception],
    ) -> None:
        # The Engine.IO drivers hard-code REMOTE_ADDR; aiohttp knows the real peer.
        request = environ.get("aiohttp.request")
        peer_address = getattr(request, "remote", None) or "?"
        try:
            credential = authenticate(self.broker.environment, environ.get("HTTP_AUTHORIZATION"))
        except AuthenticationError as exc:
            log.info("Refused %s connection from %s: %s", generation, peer_address, exc)
            raise refused(str(exc)) from None
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        try:
            tuning = TuningParameters.from_mapping(query)
        except EndpointError as exc:
            log.info("Refused %s connection of %s: %s", generation, credential.username, exc)
            raise refused(str(exc)) from None
        peer = SocketPeer(server, sid, self.namespace)
        conn = self.broker.connect(sid, peer, credential, tuning, generation)
        self._connections[(generation, sid)] = conn
