"""The blocking App2App client (python-socketio ``Client`` over websocket-client).

Thread model: the Socket.IO library reads on its own threads and hands every server
event, in order, to one dispatch thread that updates the shared state under one
lock; API calls wait on that lock's condition. Reconnecting runs on a background
thread. Safe to use from several threads.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from airflow_provider_app2app.client.base import (
    ClientCore,
    ExceptionCallback,
    ProduceRequest,
    ack_error,
    as_request,
)
from airflow_provider_app2app.client.errors import (
    App2AppTimeoutError,
    AuthenticationError,
    ClientClosedError,
    ClientConfigurationError,
    ConnectionLostError,
    EndpointUnreachableError,
    ProtocolMismatchError,
    ServiceError,
)
from airflow_provider_app2app.client.negotiation import (
    attempt_order,
    neither_generation,
    pinned_mismatch,
    remember_generation,
)
from airflow_provider_app2app.client.settings import ClientSettings
from airflow_provider_app2app.client.tracking import DeliveredMessage, ProduceReceipt
from airflow_provider_app2app.client.transport import SyncTransport, sync_transport
from airflow_provider_app2app.protocol.errors import App2AppError
from airflow_provider_app2app.protocol.messages import DeliveryReport

__all__ = ["App2AppClient"]

log = logging.getLogger("airflow_provider_app2app.client")


@dataclass
class _Ack:
    number: int
    args: tuple[Any, ...] | None = None
    done: bool = False


def _destinations(destinations: Iterable[str] | str) -> list[str]:
    items = [destinations] if isinstance(destinations, str) else list(destinations)
    if not items or not all(isinstance(d, str) and d for d in items):
        raise ClientConfigurationError(
            "subscribe() needs one or more destination URIs of your membership, e.g. "
            "kld://app2app/m/<member>/e/<env>/s/<service>/d/<name>."
        )
    return items


class App2AppClient:
    """A blocking client for the App2App service.

    Use it as a context manager (``with App2AppClient(...) as client:``), or call
    :meth:`connect` and :meth:`close`. Pass either a :class:`ClientSettings` or its
    fields as keyword arguments.

    Delivery is at-least-once: after a reconnect, messages that were handed out but
    not committed (``auto_commit=false``) are delivered again, and a commit for a
    message of the old connection is not sent.

    :param settings: the client settings; alternatively pass their fields as keywords.
    :param on_exception: called with the payload of each ``exception`` event (the
        service's asynchronous, non-fatal delivery failures); also logged.
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        on_exception: ExceptionCallback | None = None,
        **settings_fields: Any,
    ) -> None:
        if settings is None:
            settings = ClientSettings(**settings_fields)
        elif settings_fields:
            raise ClientConfigurationError(
                "Pass either a ClientSettings or its fields as keywords, not both."
            )
        self.settings = settings
        self._core = ClientCore(settings, on_exception)
        self._cond = threading.Condition(threading.RLock())
        self._transport: SyncTransport | None = None
        self._live = 0
        self._started = False
        self._closing = False
        self._stop = threading.Event()
        self._reconnector: threading.Thread | None = None
        self._stale: list[SyncTransport] = []
        self._connect_lock = threading.Lock()

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> App2AppClient:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def connect(self) -> None:
        """Connect (negotiating the protocol generation) and join the namespace.

        :raises AuthenticationError: for refused credentials.
        :raises EndpointUnreachableError: when the host is unknown or refuses.
        :raises TlsError: when the TLS handshake fails.
        :raises ProtocolMismatchError: when a pinned generation is not spoken.
        :raises App2AppTimeoutError: when connecting takes over ``connect_timeout``.
        """
        with self._connect_lock:
            with self._cond:
                if self._closing:
                    raise ClientClosedError("This App2App client is closed; create a new one.")
                if self._live:
                    return
            transport = self._open_transport()
            self._started = True
            if not self._install(transport):
                raise ConnectionLostError(
                    f"The connection to {self.settings.parsed_endpoint.console_url} dropped "
                    f"right after it was made; check the service's health and retry."
                )

    def close(self) -> None:
        """Disconnect and stop reconnecting. Buffered messages are discarded."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._stop.set()
            transport, self._transport, self._live = self._transport, None, 0
            self._cond.notify_all()
        if transport is not None:
            transport.close()
        self._close_stale()
        reconnector = self._reconnector
        if reconnector is not None and reconnector is not threading.current_thread():
            reconnector.join(timeout=self.settings.connect_timeout + 1)
        log.info("Closed the App2App client for %s.", self.settings.parsed_endpoint.console_url)

    @property
    def connected(self) -> bool:
        """Whether a connection is up right now."""
        return bool(self._live)

    @property
    def generation(self) -> str | None:
        """The protocol generation in use (``modern``/``legacy``), once connected."""
        return self._core.generation

    @property
    def subscriptions(self) -> list[str]:
        """The destinations subscribed (again after every reconnect)."""
        return list(self._core.subscriptions)

    @property
    def connection_number(self) -> int:
        """1 for the first connection, plus one per reconnect."""
        return self._core.commits.connection

    def _open_transport(self) -> SyncTransport:
        settings = self.settings
        number = self._core.commits.connection + 1
        mismatches: list[App2AppError] = []
        for generation in attempt_order(settings):
            transport = sync_transport(
                settings,
                generation,
                functools.partial(self._on_event, number),
                functools.partial(self._on_drop, number),
            )
            try:
                transport.connect()
            except ProtocolMismatchError as exc:
                if settings.socketio_version != "auto":
                    raise pinned_mismatch(settings, generation, exc) from None
                log.debug("The %s generation does not match: %s", generation, exc)
                mismatches.append(exc)
                continue
            if settings.socketio_version == "auto":
                remember_generation(settings, generation)
            return transport
        raise neither_generation(settings, mismatches)

    def _install(self, transport: SyncTransport) -> bool:
        with self._cond:
            if self._closing:
                closing = True
            else:
                closing = False
                self._transport = transport
                self._live = self._core.connection_opened(transport.generation)
                number = self._live
                self._cond.notify_all()
        if closing:
            transport.close()
            return False
        if not transport.connected:
            self._on_drop(number)
            return False
        return True

    def _on_event(self, number: int, event: str, args: tuple[Any, ...]) -> None:
        with self._cond:
            self._core.handle_event(number, event, args)
            self._cond.notify_all()

    def _on_drop(self, number: int) -> None:
        with self._cond:
            if number != self._live or self._closing:
                return
            self._core.connection_closed(number)
            if self._transport is not None:
                self._stale.append(self._transport)
            self._transport, self._live = None, 0
            if not self.settings.reconnect:
                self._core.fatal = ConnectionLostError(
                    f"The connection to {self.settings.parsed_endpoint.console_url} dropped "
                    f"and reconnect is off; create a new client (or enable reconnect)."
                )
            elif self._reconnector is None:
                self._reconnector = threading.Thread(
                    target=self._reconnect_loop, name="app2app-reconnect", daemon=True
                )
                self._reconnector.start()
            self._cond.notify_all()

    def _reconnect_loop(self) -> None:
        settings = self.settings
        attempts = 0
        try:
            for delay in settings.backoff.delays():
                self._close_stale()
                if self._stop.wait(delay):
                    return
                attempts += 1
                try:
                    transport = self._open_transport()
                except (AuthenticationError, ProtocolMismatchError) as exc:
                    self._fail(exc)
                    return
                except App2AppError as exc:
                    log.warning("Reconnect attempt %d failed: %s", attempts, exc)
                    continue
                if not self._install(transport):
                    continue
                try:
                    self._resubscribe()
                except ServiceError as exc:
                    self._fail(exc)
                    transport.close()
                    return
                except App2AppError as exc:
                    log.warning(
                        "Re-subscribing after reconnect attempt %d failed: %s", attempts, exc
                    )
                    continue
                with self._cond:
                    if self._live or self._closing:
                        self._reconnector = None
                        return
            self._fail(
                EndpointUnreachableError(
                    f"Gave up reconnecting to {settings.parsed_endpoint.console_url} after "
                    f"{attempts} attempt(s); check that the service is running, then "
                    f"create a new client (or raise backoff.max_attempts)."
                )
            )
        finally:
            with self._cond:
                if self._reconnector is threading.current_thread():
                    self._reconnector = None

    def _close_stale(self) -> None:
        """Close dropped transports (a namespace-level drop can leave Engine.IO open)."""
        with self._cond:
            stale, self._stale = self._stale, []
        for transport in stale:
            transport.close()

    def _fail(self, error: App2AppError) -> None:
        log.error("The App2App client stops: %s", error)
        with self._cond:
            self._core.fatal = error
            self._cond.notify_all()

    def _resubscribe(self) -> None:
        destinations = list(self._core.subscriptions)
        if destinations:
            self._call("subscribe", (destinations,), self.settings.operation_timeout)
            log.info("Re-subscribed to %s.", ", ".join(destinations))

    # ----------------------------------------------------------------- waiting

    def _check(self) -> None:
        """Raise the reason the client cannot be used, if any (lock held)."""
        if self._closing:
            raise ClientClosedError("This App2App client is closed; create a new one.")
        if self._core.fatal is not None:
            raise self._core.fatal
        if not self._started:
            raise ClientClosedError(
                "This App2App client is not connected; call connect() or use it in a 'with' block."
            )

    def _ready(self, deadline: float) -> tuple[SyncTransport, int]:
        """The live transport, waiting for a reconnect until ``deadline`` (lock held)."""
        while True:
            self._check()
            if self._transport is not None and self._live:
                return self._transport, self._live
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise App2AppTimeoutError(
                    f"Not connected to {self.settings.parsed_endpoint.console_url} (the "
                    f"client is reconnecting); retry later or raise the timeout."
                )
            self._cond.wait(remaining)

    def _emit(self, event: str, args: tuple[Any, ...], deadline: float, ack: bool = True) -> _Ack:
        """Emit on the live connection (lock held); the ack lands in the result."""
        transport, number = self._ready(deadline)
        record = _Ack(number)
        callback = self._ack_callback(record) if ack else None
        transport.emit(event, args, callback)
        return record

    def _ack_callback(self, record: _Ack) -> Callable[..., None]:
        def on_ack(*args: Any) -> None:
            with self._cond:
                record.args = args
                record.done = True
                self._cond.notify_all()

        return on_ack

    def _await(self, record: _Ack, deadline: float, what: str) -> tuple[Any, ...]:
        """Wait (lock held) for an acknowledgement; raise if it cannot come."""
        while not record.done:
            if record.number != self._live:
                self._check()
                raise ConnectionLostError(
                    f"The connection dropped before the service acknowledged {what}; it "
                    f"may or may not have been applied. Retry it (duplicates are possible)."
                )
            if self._closing:
                self._check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise App2AppTimeoutError(
                    f"The service did not acknowledge {what} within the timeout; it may "
                    f"be overloaded. Retry, or raise operation_timeout."
                )
            self._cond.wait(remaining)
        assert record.args is not None
        return record.args

    def _call(self, event: str, args: tuple[Any, ...], timeout: float) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        with self._cond:
            record = self._emit(event, args, deadline)
            return self._await(record, deadline, event)

    # --------------------------------------------------------------- producing

    def produce(
        self,
        to: str,
        content: Any,
        key: str | None = None,
        sender: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ProduceReceipt:
        """Send one message and wait for the service's acknowledgement.

        :param to: the recipient destination URI.
        :param content: ``str``, ``bytes`` or a JSON-able object (sent as JSON).
        :param key: optional key, echoed in the delivery report and to the recipient.
        :param sender: the sending destination (default: ``default_sender``). When an
            identity is configured for it, the content is signed.
        :param timeout: seconds to wait for the acknowledgement (default:
            ``operation_timeout``).
        :returns: the receipt; pass it to :meth:`wait_for_delivery`.
        :raises ServiceError: with the service's text when it rejects the message.
        """
        message = self._core.outbound(to, content, key, sender)
        args = self._core.produce_args(message)
        deadline = time.monotonic() + (timeout or self.settings.operation_timeout)
        with self._cond:
            record, receipt = self._send_produce(message.key, message.recipient, args, deadline)
            self._settle(record, receipt, deadline, message.sender)
        return receipt

    def _send_produce(
        self, key: str | None, recipient: str, args: tuple[Any, ...], deadline: float
    ) -> tuple[_Ack, ProduceReceipt]:
        self._ready(deadline)
        receipt = self._core.deliveries.register(key, recipient)
        try:
            record = self._emit("produce", args, deadline)
        except App2AppError as exc:
            self._core.deliveries.failed(receipt, str(exc))
            raise
        return record, receipt

    def _settle(self, record: _Ack, receipt: ProduceReceipt, deadline: float, sender: str) -> None:
        deliveries = self._core.deliveries
        try:
            ack = self._await(record, deadline, f"produce of message {receipt.key!r}")
        except App2AppError as exc:
            deliveries.failed(receipt, str(exc))
            raise
        error, text = ack_error(ack)
        if error is not None:
            deliveries.failed(receipt, error)
            raise self._core.service_error(
                "produce", error, **{"from": sender, "to": receipt.recipient}
            )
        deliveries.acknowledged(receipt, text)

    def produce_many(
        self,
        messages: Iterable[ProduceRequest | Mapping[str, Any] | tuple[Any, ...]],
        *,
        max_in_flight: int = 64,
        wait_for_delivery: bool = False,
        timeout: float | None = None,
    ) -> list[ProduceReceipt]:
        """Send many messages pipelined, with at most ``max_in_flight`` outstanding.

        :param messages: :class:`ProduceRequest` objects, mappings of their fields, or
            ``(to, content[, key[, sender]])`` tuples.
        :param max_in_flight: how many messages may await their acknowledgement (or,
            with ``wait_for_delivery``, their delivery report) at once.
        :param wait_for_delivery: count a message as in flight until its delivery
            report, and return only when every report arrived.
        :param timeout: seconds each message may wait (default: ``operation_timeout``).
        :returns: the receipts, in order.
        :raises ServiceError: for the first message the service rejected; the
            messages before it were accepted.
        """
        if max_in_flight < 1:
            raise ClientConfigurationError("max_in_flight must be 1 or more.")
        per_message = timeout or self.settings.operation_timeout
        receipts: list[ProduceReceipt] = []
        in_flight: deque[tuple[_Ack, ProduceReceipt, str, float]] = deque()
        core = self._core
        try:
            for item in messages:
                request = as_request(item)
                message = core.outbound(request.to, request.content, request.key, request.sender)
                args = core.produce_args(message)
                with self._cond:
                    while len(in_flight) >= max_in_flight:
                        self._retire(in_flight.popleft(), wait_for_delivery)
                    deadline = time.monotonic() + per_message
                    record, receipt = self._send_produce(
                        message.key, message.recipient, args, deadline
                    )
                    in_flight.append((record, receipt, message.sender, deadline))
                receipts.append(receipt)
            with self._cond:
                while in_flight:
                    self._retire(in_flight.popleft(), wait_for_delivery)
        except BaseException:
            with self._cond:
                for record, receipt, _, _ in in_flight:
                    if not receipt.settled and not record.done:
                        self._core.deliveries.failed(receipt, "abandoned by produce_many")
            raise
        return receipts

    def _retire(
        self, entry: tuple[_Ack, ProduceReceipt, str, float], until_delivered: bool
    ) -> None:
        record, receipt, sender, deadline = entry
        self._settle(record, receipt, deadline, sender)
        if until_delivered:
            self._wait_delivered([receipt], deadline)

    def _wait_delivered(
        self, targets: list[ProduceReceipt | DeliveryReport], deadline: float
    ) -> list[DeliveryReport]:
        core = self._core
        while True:
            reports = core.delivery_outcome(targets)
            if reports is not None:
                return reports
            if core.fatal is not None or self._closing:
                self._check()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                waiting = [
                    t.key for t in targets if isinstance(t, ProduceReceipt) and not t.delivered
                ]
                raise App2AppTimeoutError(
                    f"{len(waiting)} delivery report(s) did not arrive in time (keys "
                    f"{waiting[:5]!r}); with batching the service reports once a batch "
                    f"is sealed, so raise the timeout or check the 'exception' events."
                )
            self._cond.wait(remaining)

    def wait_for_delivery(
        self,
        keys: Iterable[str | ProduceReceipt] | int | None = None,
        *,
        timeout: float | None = None,
    ) -> list[DeliveryReport]:
        """Wait for the delivery reports of produced messages.

        :param keys: keys or receipts to wait for; an ``int`` waits until that many
            reports arrived since the client was created; ``None`` waits for every
            message produced so far.
        :param timeout: seconds to wait (default: ``operation_timeout``).
        :returns: the reports, in the order of ``keys`` (empty for a count).
        :raises App2AppTimeoutError: when some report did not arrive in time.
        :raises DeliveryUnconfirmedError: when the connection dropped before a report.
        """
        deadline = time.monotonic() + (timeout or self.settings.operation_timeout)
        core = self._core
        with self._cond:
            if isinstance(keys, int):
                while core.deliveries.delivered_total < keys:
                    self._check()
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise App2AppTimeoutError(
                            f"Only {core.deliveries.delivered_total} of {keys} delivery "
                            f"reports arrived in time; raise the timeout or check the "
                            f"'exception' events."
                        )
                    self._cond.wait(remaining)
                return []
            targets: list[ProduceReceipt | DeliveryReport]
            if keys is None:
                targets = list(core.deliveries.pending())
            else:
                targets = core.resolve_targets(keys)
            return self._wait_delivered(targets, deadline)

    # --------------------------------------------------------------- consuming

    def subscribe(self, destinations: Iterable[str] | str, *, timeout: float | None = None) -> None:
        """Subscribe to destinations of your membership (again after each reconnect).

        :raises ServiceError: with the service's text, e.g. for a destination of
            another membership.
        """
        items = _destinations(destinations)
        core = self._core
        with self._cond:
            added = [d for d in items if d not in core.subscriptions]
            core.subscribed(items)
        try:
            ack = self._call("subscribe", (items,), timeout or self.settings.operation_timeout)
        except App2AppError:
            with self._cond:
                core.subscriptions[:] = [d for d in core.subscriptions if d not in added]
            raise
        error, _ = ack_error(ack)
        if error is not None:
            with self._cond:
                core.subscriptions[:] = [d for d in core.subscriptions if d not in added]
            raise core.service_error("subscribe", error, of=", ".join(items))
        log.info("Subscribed to %s.", ", ".join(items))

    def receive(self, timeout: float | None = None) -> DeliveredMessage:
        """The next message, waiting up to ``timeout`` seconds (``None``: for ever).

        :raises App2AppTimeoutError: when no message arrived in time.
        :raises DecryptionError: for an envelope that cannot be opened (commit to skip).
        :raises InvalidSignatureError: for a bad signature (commit to skip).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not len(self._core.inbound):
                self._check()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise App2AppTimeoutError(
                        f"No message arrived within {timeout:g}s on "
                        f"{', '.join(self._core.subscriptions) or 'no subscription'}; "
                        f"call subscribe() first, or wait longer."
                    )
                self._cond.wait(remaining)
            return self._core.next_message()

    def messages(self, idle_timeout: float | None = None) -> Iterator[DeliveredMessage]:
        """Iterate received messages; stops after ``idle_timeout`` seconds without one."""
        while True:
            try:
                yield self.receive(idle_timeout)
            except App2AppTimeoutError:
                return

    def __iter__(self) -> Iterator[DeliveredMessage]:
        return self.messages()

    def commit(self, message: DeliveredMessage | None = None) -> int:
        """Acknowledge handed-out messages (``auto_commit=false`` only; else a no-op).

        :param message: commit every handed-out message up to and including this one;
            ``None`` commits the oldest handed-out message.
        :returns: the number of ``commit`` events sent (0 for a message of an earlier
            connection: the service redelivers it).
        """
        with self._cond:
            count = self._core.take_commits(message)
            transport = self._transport
            if count and transport is not None:
                try:
                    for _ in range(count):
                        transport.emit("commit", ())
                except ConnectionLostError:
                    log.debug("The connection dropped while committing; messages are redelivered.")
                    return 0
            return count if transport is not None else 0
