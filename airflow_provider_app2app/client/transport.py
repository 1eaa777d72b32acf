"""Thin adapters over the four Socket.IO clients: {sync, asyncio} x {modern, legacy}.

Each adapter makes one connection (no built-in reconnection: the App2App clients
reconnect themselves, with their own backoff, re-subscription and commit reset),
reports every server event to one callback *in arrival order*, and reports the end
of the connection once.

Two behaviours of the Socket.IO libraries are corrected here:

* **Event order.** Engine.IO clients dispatch every received message in a new
  thread (sync) or task (asyncio), so two ``data`` events that arrive back to back
  can reach the application in either order (threads), or after the disconnect that
  followed them (tasks), which breaks log order and commit counting. The sync
  adapters dispatch ``message`` and ``disconnect`` through one FIFO thread per
  connection; the asyncio adapters handle each message inline in the read loop.
* **Process-wide side effects.** The legacy libraries install SIGINT handlers (the
  asyncio one stops the event loop on Ctrl-C); they are kept from doing so, and
  the transport loggers stay at ERROR unless configured, because at INFO they print
  every packet.

Nothing here ever logs the ``Authorization`` header or the password.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import engineio
import engineio_v3
import engineio_v3.asyncio_client
import engineio_v3.client
import requests
import socketio
import socketio_v4
import socketio_v4.client
import websocket

from airflow_provider_app2app.client.errors import (
    App2AppTimeoutError,
    ConnectionLostError,
)
from airflow_provider_app2app.client.negotiation import classify_failure, refusal_error
from airflow_provider_app2app.client.settings import ClientSettings, Generation
from airflow_provider_app2app.protocol.endpoint import basic_auth_header
from airflow_provider_app2app.protocol.errors import App2AppError

__all__ = [
    "TRANSPORT_LOGGER",
    "AsyncTransport",
    "EventCallback",
    "SyncTransport",
    "async_transport",
    "sync_transport",
]

TRANSPORT_LOGGER = logging.getLogger("airflow_provider_app2app.client.transport")
"""Where the Socket.IO and Engine.IO libraries log; ERROR unless configured."""
if TRANSPORT_LOGGER.level == logging.NOTSET:
    TRANSPORT_LOGGER.setLevel(logging.ERROR)

# Keep the legacy libraries from installing process-wide SIGINT handlers.
engineio_v3.asyncio_client.async_signal_handler_set = True
if engineio_v3.client.original_signal_handler is None:
    engineio_v3.client.original_signal_handler = True
if socketio_v4.client.original_signal_handler is None:
    socketio_v4.client.original_signal_handler = True

SERVER_EVENTS = ("data", "message", "delivery-report", "exception", "error")
"""Events the service sends on the namespace (``connect_error`` is handled apart)."""

EventCallback = Callable[[str, tuple[Any, ...]], None]
"""``(event, args)`` for each server event, in arrival order."""

_DISPATCHED = ("message", "disconnect")


# --------------------------------------------------------------- ordered dispatch


class _OrderedSyncDispatch:
    """Engine.IO (sync) mixin: ``message``/``disconnect`` events on one FIFO thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fifo: queue.SimpleQueue[tuple[str, tuple[Any, ...], threading.Event | None]] = (
            queue.SimpleQueue()
        )
        self._fifo_lock = threading.Lock()
        self._fifo_thread: threading.Thread | None = None

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        parent: Any = super()
        if event not in _DISPATCHED:
            return parent._trigger_event(event, *args, **kwargs)
        kwargs.pop("run_async", None)
        if threading.current_thread() is self._fifo_thread:
            return parent._trigger_event(event, *args, run_async=False)
        done = threading.Event() if event == "disconnect" else None
        self._fifo.put((event, args, done))
        with self._fifo_lock:
            if self._fifo_thread is None or not self._fifo_thread.is_alive():
                self._fifo_thread = threading.Thread(
                    target=self._fifo_loop, name="app2app-socketio-dispatch", daemon=True
                )
                self._fifo_thread.start()
        if done is not None:
            done.wait(10.0)
        return None

    def _fifo_loop(self) -> None:
        parent: Any = super()
        while True:
            try:
                event, args, done = self._fifo.get(timeout=0.5)
            except queue.Empty:
                # a stray packet after the disconnect restarted this thread: end it
                if getattr(self, "state", "connected") != "connected":
                    with self._fifo_lock:
                        if self._fifo.empty():
                            self._fifo_thread = None
                            return
                continue
            try:
                parent._trigger_event(event, *args, run_async=False)
            except Exception:  # engineio logs handler errors itself; never die
                TRANSPORT_LOGGER.exception("Socket.IO %s handler failed", event)
            finally:
                if done is not None:
                    done.set()
            if event == "disconnect":
                with self._fifo_lock:
                    if self._fifo.empty():
                        self._fifo_thread = None
                        return


class _InlineAsyncDispatch:
    """Engine.IO (asyncio) mixin: handle each received message inline, in the read loop.

    The read loop awaits the handling of one packet before it reads the next, so
    events reach the application in arrival order, with no task per message. A
    server-sent namespace DISCONNECT makes python-socketio call ``eio.disconnect()``
    from inside that handling; waiting there for the read loop to end would mean
    waiting for itself, so such a disconnect does not wait.
    """

    async def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message":
            kwargs["run_async"] = False
        parent: Any = super()
        return await parent._trigger_event(event, *args, **kwargs)

    async def disconnect(self, *args: Any, **kwargs: Any) -> Any:
        if asyncio.current_task() is getattr(self, "read_loop_task", None):
            if args:
                args = (True, *args[1:])
            else:
                kwargs["abort"] = True
        parent: Any = super()
        return await parent.disconnect(*args, **kwargs)


class _ModernEngineIO(_OrderedSyncDispatch, engineio.Client):  # type: ignore[misc]
    pass


class _LegacyEngineIO(_OrderedSyncDispatch, engineio_v3.Client):  # type: ignore[misc]
    def _connect_websocket(self, url: str, headers: dict[str, str], path: str) -> Any:
        _legacy_ws_options.value = getattr(self, "app2app_ws_options", None)
        try:
            return super()._connect_websocket(url, headers, path)
        finally:
            _legacy_ws_options.value = None


class _ModernAsyncEngineIO(_InlineAsyncDispatch, engineio.AsyncClient):  # type: ignore[misc]
    pass


class _LegacyAsyncEngineIO(_InlineAsyncDispatch, engineio_v3.AsyncClient):  # type: ignore[misc]
    pass


class _ModernSocketIO(socketio.Client):  # type: ignore[misc]
    def _engineio_client_class(self) -> type:
        return _ModernEngineIO


class _LegacySocketIO(socketio_v4.Client):  # type: ignore[misc]
    def _engineio_v3_client_class(self) -> type:
        return _LegacyEngineIO


class _ModernAsyncSocketIO(socketio.AsyncClient):  # type: ignore[misc]
    def _engineio_client_class(self) -> type:
        return _ModernAsyncEngineIO


class _LegacyAsyncSocketIO(socketio_v4.AsyncClient):  # type: ignore[misc]
    def _engineio_v3_client_class(self) -> type:
        return _LegacyAsyncEngineIO


class _LegacyWsOptions(threading.local):
    value: dict[str, Any] | None = None


_legacy_ws_options = _LegacyWsOptions()


class _WebsocketModule:
    """Stands in for ``websocket`` inside ``engineio_v3.client``.

    The legacy sync Engine.IO client has no way to pass TLS options or a connect
    timeout to websocket-client; this adds the calling connection's options (set
    thread-locally by :class:`_LegacyEngineIO`) to ``create_connection``.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(websocket, name)

    def create_connection(self, url: str, **kwargs: Any) -> Any:
        extra = _legacy_ws_options.value
        if extra:
            sslopt = {**kwargs.pop("sslopt", {}), **extra.get("sslopt", {})}
            if sslopt:
                kwargs["sslopt"] = sslopt
            kwargs.setdefault("timeout", extra.get("timeout"))
        return websocket.create_connection(url, **kwargs)


engineio_v3.client.websocket = _WebsocketModule()


# ------------------------------------------------------------------------ helpers


def _headers(settings: ClientSettings) -> dict[str, str]:
    return {"Authorization": basic_auth_header(settings.username, settings.password)}


def _sslopt(settings: ClientSettings) -> dict[str, Any]:
    if not settings.verify_tls:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    if settings.ca_bundle:
        return {"ca_certs": settings.ca_bundle}
    return {}


def _ssl_context(settings: ClientSettings) -> ssl.SSLContext | None:
    if not settings.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.ca_bundle:
        return ssl.create_default_context(cafile=settings.ca_bundle)
    return None


_DRAIN_SECONDS = 2.0


def _drain(sio: Any) -> None:
    """Wait until the Engine.IO write queue is sent.

    Both Engine.IO generations close the WebSocket on ``disconnect()`` without
    sending what is still queued, which would drop the last ``commit`` events.
    """
    pending = getattr(sio.eio, "queue", None)
    if pending is None or not _transport_open(sio):
        return
    deadline = time.monotonic() + _DRAIN_SECONDS
    while pending.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.002)


async def _drain_async(sio: Any) -> None:
    """The asyncio form of :func:`_drain`."""
    pending = getattr(sio.eio, "queue", None)
    if pending is None or not _transport_open(sio):
        return
    try:
        await asyncio.wait_for(pending.join(), _DRAIN_SECONDS)
    except asyncio.TimeoutError:
        TRANSPORT_LOGGER.debug("the write queue did not drain before disconnect")


def _transport_open(sio: Any) -> bool:
    return sio is not None and getattr(sio.eio, "state", None) == "connected"


class _Evidence:
    """What one connection attempt saw: refusal reason, namespace state."""

    def __init__(self) -> None:
        self.refusal: object = None
        self.refused = False
        self.connected = False
        self.dropped = False


class _TransportCore:
    """What both transports share: settings, evidence, event registration, errors."""

    def __init__(
        self,
        settings: ClientSettings,
        generation: Generation,
        on_event: EventCallback,
        on_disconnect: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.generation = generation
        self._on_event = on_event
        self._on_disconnect = on_disconnect
        self._evidence = _Evidence()
        self._ended = False
        self._sio: Any = None

    def _classify(self, exc: BaseException) -> App2AppError:
        if self._evidence.refused:
            return refusal_error(self.settings, self._evidence.refusal)
        if "Unexpected connection error" in str(exc):
            return App2AppTimeoutError(
                f"The server at {self.settings.parsed_endpoint.console_url} did not "
                f"accept namespace {self.settings.parsed_endpoint.namespace} within "
                f"connect_timeout={self.settings.connect_timeout:g}s; check the endpoint "
                f"path or raise connect_timeout."
            )
        return classify_failure(self.settings, self.generation, exc)

    def _register(self, sio: Any, namespace: str) -> None:
        for event in SERVER_EVENTS:
            sio.on(event, self._forwarder(event), namespace=namespace)
        sio.on("connect", self._connected, namespace=namespace)
        sio.on("connect_error", self._refused, namespace=namespace)
        sio.on("disconnect", self._dropped, namespace=namespace)
        if self.generation == "legacy":
            sio.on("connect_error", self._refused, namespace="/")
            sio.on("disconnect", self._dropped, namespace="/")

    def _forwarder(self, event: str) -> Callable[..., None]:
        def forward(*args: Any) -> None:
            if not self._ended:
                self._on_event(event, args)

        return forward

    def _connected(self) -> None:
        raise NotImplementedError

    def _refused(self, *args: Any) -> None:
        raise NotImplementedError

    def _dropped(self, *args: Any) -> None:
        raise NotImplementedError


# ------------------------------------------------------------------- sync adapter


class SyncTransport(_TransportCore):
    """One Socket.IO connection (threads), modern or legacy.

    :param settings: the client settings.
    :param generation: ``modern`` or ``legacy``.
    :param on_event: called as ``(event, args)`` for each server event, in order,
        from the transport's dispatch thread; must not block.
    :param on_disconnect: called once when an established connection ends.
    """

    def __init__(
        self,
        settings: ClientSettings,
        generation: Generation,
        on_event: EventCallback,
        on_disconnect: Callable[[], None],
    ) -> None:
        super().__init__(settings, generation, on_event, on_disconnect)
        self._state = threading.Condition()

    def connect(self) -> None:
        """Connect and join the namespace, or raise a typed error."""
        settings = self.settings
        endpoint = settings.parsed_endpoint
        namespace = endpoint.namespace
        if self.generation == "modern":
            options: dict[str, Any] = {
                "reconnection": False,
                "logger": TRANSPORT_LOGGER,
                "engineio_logger": TRANSPORT_LOGGER,
                "handle_sigint": False,
                "request_timeout": settings.connect_timeout,
                "ssl_verify": settings.verify_tls,
            }
            if settings.verify_tls and settings.ca_bundle:
                session = requests.Session()
                session.verify = settings.ca_bundle
                options["http_session"] = session
            sio: Any = _ModernSocketIO(**options)
        else:
            sio = _LegacySocketIO(
                reconnection=False,
                logger=TRANSPORT_LOGGER,
                engineio_v3_logger=TRANSPORT_LOGGER,
                request_timeout=settings.connect_timeout,
                ssl_verify=(settings.ca_bundle or True) if settings.verify_tls else False,
            )
            sio.eio.app2app_ws_options = {
                "sslopt": _sslopt(settings),
                "timeout": settings.connect_timeout,
            }
        self._sio = sio
        self._register(sio, namespace)
        deadline = time.monotonic() + settings.connect_timeout
        try:
            if self.generation == "modern":
                sio.connect(
                    endpoint.connect_url,
                    headers=_headers(settings),
                    transports=list(settings.transports),
                    namespaces=[namespace],
                    socketio_path=endpoint.socketio_path,
                    wait=True,
                    wait_timeout=settings.connect_timeout,
                )
            else:
                sio.connect(
                    endpoint.connect_url,
                    headers=_headers(settings),
                    transports=list(settings.transports),
                    namespaces=[namespace],
                    socketio_v4_path=endpoint.socketio_path,
                )
        except (socketio.exceptions.ConnectionError, socketio_v4.exceptions.ConnectionError) as exc:
            self._abandon()
            raise self._classify(exc) from None
        except (ValueError, OSError) as exc:
            self._abandon()
            raise classify_failure(settings, self.generation, exc) from None
        with self._state:
            self._state.wait_for(
                lambda: (
                    self._evidence.connected or self._evidence.refused or self._evidence.dropped
                ),
                timeout=max(0.0, deadline - time.monotonic()),
            )
            evidence = self._evidence
            ok = evidence.connected and not evidence.refused and not evidence.dropped
        if not ok:
            self._abandon()
            if evidence.refused:
                raise refusal_error(settings, evidence.refusal)
            if evidence.dropped:
                raise ConnectionLostError(
                    f"The server at {endpoint.console_url} closed the connection while "
                    f"user {settings.username!r} joined namespace {namespace}; check the "
                    f"credentials and the endpoint path."
                )
            raise App2AppTimeoutError(
                f"The server at {endpoint.console_url} did not accept namespace "
                f"{namespace} within connect_timeout={settings.connect_timeout:g}s; "
                f"check the endpoint path or raise connect_timeout."
            )

    def _connected(self) -> None:
        with self._state:
            self._evidence.connected = True
            self._state.notify_all()

    def _refused(self, *args: Any) -> None:
        # socketio also reports its own transport failures as connect_error; only a
        # refusal sent by the server over an open Engine.IO connection counts here.
        if not _transport_open(self._sio):
            return
        with self._state:
            if not self._evidence.connected:
                self._evidence.refused = True
                self._evidence.refusal = args[0] if len(args) == 1 else (list(args) or None)
            self._state.notify_all()

    def _dropped(self, *args: Any) -> None:
        with self._state:
            was_connected = self._evidence.connected and not self._ended
            self._evidence.dropped = True
            self._ended = True
            self._state.notify_all()
        if was_connected:
            self._on_disconnect()

    def _abandon(self) -> None:
        self._ended = True
        try:
            if self._sio is not None:
                self._sio.disconnect()
        except Exception:  # best effort on a half-open connection
            TRANSPORT_LOGGER.debug("disconnect after a failed connect raised", exc_info=True)

    @property
    def connected(self) -> bool:
        """Whether the namespace is joined and the connection has not ended."""
        return self._evidence.connected and not self._ended

    def emit(
        self, event: str, args: tuple[Any, ...], callback: Callable[..., None] | None = None
    ) -> None:
        """Send one event on the namespace.

        :raises ConnectionLostError: when the connection is not up.
        """
        if not self.connected:
            raise ConnectionLostError("The connection to the App2App service is down.")
        try:
            self._sio.emit(
                event,
                data=args,
                namespace=self.settings.parsed_endpoint.namespace,
                callback=callback,
            )
        except (
            socketio.exceptions.SocketIOError,
            socketio_v4.exceptions.SocketIOError,
            OSError,
        ) as exc:
            raise ConnectionLostError(
                f"The connection to the App2App service dropped while sending {event} ({exc})."
            ) from None

    def close(self) -> None:
        """Flush what was emitted, then disconnect (no ``on_disconnect`` call)."""
        self._ended = True
        if self._sio is not None:
            _drain(self._sio)
            try:
                self._sio.disconnect()
            except Exception:
                TRANSPORT_LOGGER.debug("disconnect raised", exc_info=True)


def sync_transport(
    settings: ClientSettings,
    generation: Generation,
    on_event: EventCallback,
    on_disconnect: Callable[[], None],
) -> SyncTransport:
    """A new, unconnected sync transport."""
    return SyncTransport(settings, generation, on_event, on_disconnect)


# ---------------------------------------------------------------- asyncio adapter


class AsyncTransport(_TransportCore):
    """One Socket.IO connection (asyncio), modern or legacy.

    :param settings: the client settings.
    :param generation: ``modern`` or ``legacy``.
    :param on_event: called as ``(event, args)`` for each server event, in order, on
        the event loop; must not block.
    :param on_disconnect: called once when an established connection ends.
    """

    def __init__(
        self,
        settings: ClientSettings,
        generation: Generation,
        on_event: EventCallback,
        on_disconnect: Callable[[], None],
    ) -> None:
        super().__init__(settings, generation, on_event, on_disconnect)
        self._changed: asyncio.Event | None = None
        self._session: aiohttp.ClientSession | None = None

    async def connect(self) -> None:
        """Connect and join the namespace, or raise a typed error."""
        settings = self.settings
        self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._connect(), settings.connect_timeout)
        except asyncio.TimeoutError:
            await self._abandon()
            raise App2AppTimeoutError(
                f"Connecting to {settings.parsed_endpoint.console_url} took longer than "
                f"connect_timeout={settings.connect_timeout:g}s; check that the endpoint "
                f"is reachable from here (proxy, firewall) or raise connect_timeout."
            ) from None
        except App2AppError:
            await self._abandon()
            raise

    async def _connect(self) -> None:
        settings = self.settings
        endpoint = settings.parsed_endpoint
        namespace = endpoint.namespace
        context = _ssl_context(settings)
        if context is not None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
        if self.generation == "modern":
            options: dict[str, Any] = {
                "reconnection": False,
                "logger": TRANSPORT_LOGGER,
                "engineio_logger": TRANSPORT_LOGGER,
                "handle_sigint": False,
                "request_timeout": settings.connect_timeout,
                "ssl_verify": settings.verify_tls,
            }
            if self._session is not None:
                options["http_session"] = self._session
            sio: Any = _ModernAsyncSocketIO(**options)
        else:
            sio = _LegacyAsyncSocketIO(
                reconnection=False,
                logger=TRANSPORT_LOGGER,
                engineio_v3_logger=TRANSPORT_LOGGER,
                request_timeout=settings.connect_timeout,
                ssl_verify=settings.verify_tls,
            )
            if self._session is not None:
                sio.eio.http = self._session
        self._sio = sio
        self._register(sio, namespace)
        try:
            if self.generation == "modern":
                await sio.connect(
                    endpoint.connect_url,
                    headers=_headers(settings),
                    transports=list(settings.transports),
                    namespaces=[namespace],
                    socketio_path=endpoint.socketio_path,
                    wait=True,
                    wait_timeout=settings.connect_timeout,
                )
            else:
                await sio.connect(
                    endpoint.connect_url,
                    headers=_headers(settings),
                    transports=list(settings.transports),
                    namespaces=[namespace],
                    socketio_v4_path=endpoint.socketio_path,
                )
        except (socketio.exceptions.ConnectionError, socketio_v4.exceptions.ConnectionError) as exc:
            raise self._classify(exc) from None
        except (ValueError, OSError, aiohttp.ClientError) as exc:
            raise classify_failure(settings, self.generation, exc) from None
        assert self._changed is not None
        while not (self._evidence.connected or self._evidence.refused or self._evidence.dropped):
            self._changed.clear()
            await self._changed.wait()
        evidence = self._evidence
        if evidence.refused:
            raise refusal_error(settings, evidence.refusal)
        if evidence.dropped:
            raise ConnectionLostError(
                f"The server at {endpoint.console_url} closed the connection while user "
                f"{settings.username!r} joined namespace {namespace}; check the "
                f"credentials and the endpoint path."
            )

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _connected(self) -> None:
        self._evidence.connected = True
        self._notify()

    def _refused(self, *args: Any) -> None:
        if not _transport_open(self._sio):
            return
        if not self._evidence.connected:
            self._evidence.refused = True
            self._evidence.refusal = args[0] if len(args) == 1 else (list(args) or None)
        self._notify()

    def _dropped(self, *args: Any) -> None:
        was_connected = self._evidence.connected and not self._ended
        self._evidence.dropped = True
        self._ended = True
        self._notify()
        if was_connected:
            self._on_disconnect()

    async def _abandon(self) -> None:
        self._ended = True
        await self._shutdown()

    async def _shutdown(self) -> None:
        sio = self._sio
        if sio is not None:
            try:
                await sio.disconnect()
            except Exception:
                TRANSPORT_LOGGER.debug("disconnect raised", exc_info=True)
            http = getattr(sio.eio, "http", None)
            if http is not None and not http.closed and http is not self._session:
                await http.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()

    @property
    def connected(self) -> bool:
        """Whether the namespace is joined and the connection has not ended."""
        return self._evidence.connected and not self._ended

    async def emit(
        self, event: str, args: tuple[Any, ...], callback: Callable[..., None] | None = None
    ) -> None:
        """Send one event on the namespace.

        :raises ConnectionLostError: when the connection is not up.
        """
        if not self.connected:
            raise ConnectionLostError("The connection to the App2App service is down.")
        try:
            await self._sio.emit(
                event,
                data=args,
                namespace=self.settings.parsed_endpoint.namespace,
                callback=callback,
            )
        except (
            socketio.exceptions.SocketIOError,
            socketio_v4.exceptions.SocketIOError,
            OSError,
            aiohttp.ClientError,
        ) as exc:
            raise ConnectionLostError(
                f"The connection to the App2App service dropped while sending {event} ({exc})."
            ) from None

    async def close(self) -> None:
        """Flush what was emitted, then disconnect (no ``on_disconnect`` call)."""
        self._ended = True
        if self._sio is not None:
            await _drain_async(self._sio)
        await self._shutdown()


def async_transport(
    settings: ClientSettings,
    generation: Generation,
    on_event: EventCallback,
    on_disconnect: Callable[[], None],
) -> AsyncTransport:
    """A new, unconnected asyncio transport."""
    return AsyncTransport(settings, generation, on_event, on_disconnect)
