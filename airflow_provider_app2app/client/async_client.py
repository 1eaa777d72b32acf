"""The asyncio App2App client (python-socketio ``AsyncClient`` over aiohttp).

Same vocabulary as :class:`~airflow_provider_app2app.client.sync_client.App2AppClient`,
with coroutines. Everything runs on the event loop that connected the client:
server events are applied in arrival order by one dispatch task, acknowledgements
resolve futures, and reconnecting is a background task. Nothing here blocks the
loop except the CPU work of signing, decrypting and verifying.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
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
from airflow_provider_app2app.client.sync_client import _destinations
from airflow_provider_app2app.client.tracking import DeliveredMessage, ProduceReceipt
from airflow_provider_app2app.client.transport import AsyncTransport, async_transport
from airflow_provider_app2app.protocol.errors import App2AppError
from airflow_provider_app2app.protocol.messages import DeliveryReport

__all__ = ["AsyncApp2AppClient"]

log = logging.getLogger("airflow_provider_app2app.client")

_AckFuture = asyncio.Future[tuple[Any, ...]]


class _Notifier:
    """Wakes every coroutine waiting for *some* state change (single event loop)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, timeout: float | None) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


class AsyncApp2AppClient:
    """An asyncio client for the App2App service.

    Use it as an async context manager (``async with AsyncApp2AppClient(...) as
    client:``), or await :meth:`connect` and :meth:`close`. Pass either a
    :class:`ClientSettings` or its fields as keyword arguments.

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
        self._changed = _Notifier()
        self._transport: AsyncTransport | None = None
        self._live = 0
        self._started = False
        self._closing = False
        self._acks: dict[int, set[_AckFuture]] = {}
        self._reconnector: asyncio.Task[None] | None = None
        self._stale: list[AsyncTransport] = []
        self._connect_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> AsyncApp2AppClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect (negotiating the protocol generation) and join the namespace.

        :raises AuthenticationError: for refused credentials.
        :raises EndpointUnreachableError: when the host is unknown or refuses.
        :raises TlsError: when the TLS handshake fails.
        :raises ProtocolMismatchError: when a pinned generation is not spoken.
        :raises App2AppTimeoutError: when connecting takes over ``connect_timeout``.
        """
        if self._connect_lock is None:
            self._connect_lock = asyncio.Lock()
            self._loop = asyncio.get_running_loop()
        async with self._connect_lock:
            if self._closing:
                raise ClientClosedError("This App2App client is closed; create a new one.")
            if self._live:
                return
            transport = await self._open_transport()
            self._started = True
            if not await self._install(transport):
                raise ConnectionLostError(
                    f"The connection to {self.settings.parsed_endpoint.console_url} dropped "
                    f"right after it was made; check the service's health and retry."
                )

    async def close(self) -> None:
        """Disconnect and stop reconnecting. Buffered messages are discarded."""
        if self._closing:
            return
        self._closing = True
        transport, self._transport, self._live = self._transport, None, 0
        self._fail_acks(None)
        self._changed.wake()
        reconnector = self._reconnector
        if reconnector is not None and reconnector is not asyncio.current_task():
            reconnector.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reconnector
        for stale in [*self._stale, *([transport] if transport else [])]:
            await stale.close()
        self._stale.clear()
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

    async def _open_transport(self) -> AsyncTransport:
        settings = self.settings
        number = self._core.commits.connection + 1
        mismatches: list[App2AppError] = []
        for generation in attempt_order(settings):
            transport = async_transport(
                settings,
                generation,
                functools.partial(self._on_event, number),
                functools.partial(self._on_drop, number),
            )
            try:
                await transport.connect()
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

    async def _install(self, transport: AsyncTransport) -> bool:
        if self._closing:
            await transport.close()
            return False
        self._transport = transport
        self._live = self._core.connection_opened(transport.generation)
        self._changed.wake()
        if not transport.connected:
            self._on_drop(self._live)
            return False
        return True

    def _on_event(self, number: int, event: str, args: tuple[Any, ...]) -> None:
        self._core.handle_event(number, event, args)
        self._changed.wake()

    def _on_drop(self, number: int) -> None:
        if number != self._live or self._closing:
            return
        self._core.connection_closed(number)
        if self._transport is not None:
            self._stale.append(self._transport)
        self._transport, self._live = None, 0
        self._fail_acks(number)
        if not self.settings.reconnect:
            self._core.fatal = ConnectionLostError(
                f"The connection to {self.settings.parsed_endpoint.console_url} dropped and "
                f"reconnect is off; create a new client (or enable reconnect)."
            )
        elif self._reconnector is None or self._reconnector.done():
            assert self._loop is not None
            self._reconnector = self._loop.create_task(self._reconnect_loop())
        self._changed.wake()

    def _fail_acks(self, number: int | None) -> None:
        numbers = list(self._acks) if number is None else [number]
        for n in numbers:
            for future in self._acks.pop(n, set()):
                if not future.done():
                    future.set_exception(
                        ConnectionLostError("The connection dropped before the acknowledgement.")
                    )
                    future.exception()  # mark retrieved; the waiter re-raises its own error

    async def _reconnect_loop(self) -> None:
        settings = self.settings
        attempts = 0
        for delay in settings.backoff.delays():
            for stale in self._stale:
                await stale.close()
            self._stale.clear()
            await asyncio.sleep(delay)
            if self._closing:
                return
            attempts += 1
            try:
                transport = await self._open_transport()
            except (AuthenticationError, ProtocolMismatchError) as exc:
                self._fail(exc)
                return
            except App2AppError as exc:
                log.warning("Reconnect attempt %d failed: %s", attempts, exc)
                continue
            if not await self._install(transport):
                continue
            try:
                await self._resubscribe()
            except ServiceError as exc:
                self._fail(exc)
                await transport.close()
                return
            except App2AppError as exc:
                log.warning("Re-subscribing after reconnect attempt %d failed: %s", attempts, exc)
                continue
            if self._live or self._closing:
                return
        self._fail(
            EndpointUnreachableError(
                f"Gave up reconnecting to {settings.parsed_endpoint.console_url} after "
                f"{attempts} attempt(s); check that the service is running, then create "
                f"a new client (or raise backoff.max_attempts)."
            )
        )

    def _fail(self, error: App2AppError) -> None:
        log.error("The App2App client stops: %s", error)
        self._core.fatal = error
        self._changed.wake()

    async def _resubscribe(self) -> None:
        destinations = list(self._core.subscriptions)
        if destinations:
            await self._call("subscribe", (destinations,), self.settings.operation_timeout)
            log.info("Re-subscribed to %s.", ", ".join(destinations))

    # ----------------------------------------------------------------- waiting

    def _check(self) -> None:
        if self._closing:
            raise ClientClosedError("This App2App client is closed; create a new one.")
        if self._core.fatal is not None:
            raise self._core.fatal
        if not self._started:
            raise ClientClosedError(
                "This App2App client is not connected; await connect() or use it in an "
                "'async with' block."
            )

    async def _ready(self, deadline: float) -> tuple[AsyncTransport, int]:
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
            await self._changed.wait(remaining)

    def _new_ack(self, number: int) -> _AckFuture:
        future: _AckFuture = asyncio.get_running_loop().create_future()
        self._acks.setdefault(number, set()).add(future)

        def discard(done: _AckFuture, n: int = number) -> None:
            pending = self._acks.get(n)
            if pending is not None:
                pending.discard(done)

        future.add_done_callback(discard)
        return future

    @staticmethod
    def _resolver(future: _AckFuture) -> Any:
        def on_ack(*args: Any) -> None:
            if not future.done():
                future.set_result(args)

        return on_ack

    async def _emit(self, event: str, args: tuple[Any, ...], deadline: float) -> _AckFuture:
        transport, number = await self._ready(deadline)
        future = self._new_ack(number)
        await transport.emit(event, args, self._resolver(future))
        return future

    async def _await(self, future: _AckFuture, deadline: float, what: str) -> tuple[Any, ...]:
        # One timer that cancels the future: cheaper than asyncio.wait_for, which
        # matters when a pipeline waits for thousands of acknowledgements.
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            future.cancel()

        assert self._loop is not None
        timer = None
        if not future.done():
            timer = self._loop.call_later(max(deadline - time.monotonic(), 0.0), expire)
        try:
            return await future
        except asyncio.CancelledError:
            if not expired:
                raise
            raise App2AppTimeoutError(
                f"The service did not acknowledge {what} within the timeout; it may be "
                f"overloaded. Retry, or raise operation_timeout."
            ) from None
        except ConnectionLostError:
            self._check()
            raise ConnectionLostError(
                f"The connection dropped before the service acknowledged {what}; it may "
                f"or may not have been applied. Retry it (duplicates are possible)."
            ) from None
        finally:
            if timer is not None:
                timer.cancel()

    async def _call(self, event: str, args: tuple[Any, ...], timeout: float) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        future = await self._emit(event, args, deadline)
        return await self._await(future, deadline, event)

    # --------------------------------------------------------------- producing

    async def produce(
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
        deadline = time.monotonic() + (timeout or self.settings.operation_timeout)
        future, receipt = await self._send_produce(
            message.key, message.recipient, self._core.produce_args(message), deadline
        )
        await self._settle(future, receipt, deadline, message.sender)
        return receipt

    async def _send_produce(
        self, key: str | None, recipient: str, args: tuple[Any, ...], deadline: float
    ) -> tuple[_AckFuture, ProduceReceipt]:
        transport, number = await self._ready(deadline)
        receipt = self._core.deliveries.register(key, recipient)
        future = self._new_ack(number)
        try:
            await transport.emit("produce", args, self._resolver(future))
        except App2AppError as exc:
            self._core.deliveries.failed(receipt, str(exc))
            raise
        return future, receipt

    async def _settle(
        self, future: _AckFuture, receipt: ProduceReceipt, deadline: float, sender: str
    ) -> None:
        deliveries = self._core.deliveries
        try:
            ack = await self._await(future, deadline, f"produce of message {receipt.key!r}")
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

    async def produce_many(
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
        in_flight: deque[tuple[_AckFuture, ProduceReceipt, str, float]] = deque()
        core = self._core
        try:
            for item in messages:
                request = as_request(item)
                message = core.outbound(request.to, request.content, request.key, request.sender)
                while len(in_flight) >= max_in_flight:
                    await self._retire(in_flight.popleft(), wait_for_delivery)
                deadline = time.monotonic() + per_message
                future, receipt = await self._send_produce(
                    message.key, message.recipient, core.produce_args(message), deadline
                )
                in_flight.append((future, receipt, message.sender, deadline))
                receipts.append(receipt)
            while in_flight:
                await self._retire(in_flight.popleft(), wait_for_delivery)
        except BaseException:
            for future, receipt, _, _ in in_flight:
                if not receipt.settled and not future.done():
                    future.cancel()
                    core.deliveries.failed(receipt, "abandoned by produce_many")
            raise
        return receipts

    async def _retire(
        self, entry: tuple[_AckFuture, ProduceReceipt, str, float], until_delivered: bool
    ) -> None:
        future, receipt, sender, deadline = entry
        await self._settle(future, receipt, deadline, sender)
        if until_delivered:
            await self._wait_delivered([receipt], deadline)

    async def _wait_delivered(
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
            await self._changed.wait(remaining)

    async def wait_for_delivery(
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
        if isinstance(keys, int):
            while core.deliveries.delivered_total < keys:
                self._check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise App2AppTimeoutError(
                        f"Only {core.deliveries.delivered_total} of {keys} delivery reports "
                        f"arrived in time; raise the timeout or check the 'exception' events."
                    )
                await self._changed.wait(remaining)
            return []
        targets: list[ProduceReceipt | DeliveryReport]
        targets = list(core.deliveries.pending()) if keys is None else core.resolve_targets(keys)
        return await self._wait_delivered(targets, deadline)

    # --------------------------------------------------------------- consuming

    async def subscribe(
        self, destinations: Iterable[str] | str, *, timeout: float | None = None
    ) -> None:
        """Subscribe to destinations of your membership (again after each reconnect).

        :raises ServiceError: with the service's text, e.g. for a destination of
            another membership.
        """
        items = _destinations(destinations)
        core = self._core
        added = [d for d in items if d not in core.subscriptions]
        core.subscribed(items)
        try:
            ack = await self._call(
                "subscribe", (items,), timeout or self.settings.operation_timeout
            )
            error, _ = ack_error(ack)
        except App2AppError:
            core.subscriptions[:] = [d for d in core.subscriptions if d not in added]
            raise
        if error is not None:
            core.subscriptions[:] = [d for d in core.subscriptions if d not in added]
            raise core.service_error("subscribe", error, of=", ".join(items))
        log.info("Subscribed to %s.", ", ".join(items))

    async def receive(self, timeout: float | None = None) -> DeliveredMessage:
        """The next message, waiting up to ``timeout`` seconds (``None``: for ever).

        :raises App2AppTimeoutError: when no message arrived in time.
        :raises DecryptionError: for an envelope that cannot be opened (commit to skip).
        :raises InvalidSignatureError: for a bad signature (commit to skip).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not len(self._core.inbound):
            self._check()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise App2AppTimeoutError(
                    f"No message arrived within {timeout:g}s on "
                    f"{', '.join(self._core.subscriptions) or 'no subscription'}; call "
                    f"subscribe() first, or wait longer."
                )
            await self._changed.wait(remaining)
        return self._core.next_message()

    async def messages(self, idle_timeout: float | None = None) -> AsyncIterator[DeliveredMessage]:
        """Iterate received messages; stops after ``idle_timeout`` seconds without one."""
        while True:
            try:
                message = await self.receive(idle_timeout)
            except App2AppTimeoutError:
                return
            yield message

    def __aiter__(self) -> AsyncIterator[DeliveredMessage]:
        return self.messages()

    async def commit(self, message: DeliveredMessage | None = None) -> int:
        """Acknowledge handed-out messages (``auto_commit=false`` only; else a no-op).

        :param message: commit every handed-out message up to and including this one;
            ``None`` commits the oldest handed-out message.
        :returns: the number of ``commit`` events sent (0 for a message of an earlier
            connection: the service redelivers it).
        """
        count = self._core.take_commits(message)
        transport = self._transport
        if not count or transport is None:
            return 0
        try:
            for _ in range(count):
                await transport.emit("commit", ())
        except ConnectionLostError:
            log.debug("The connection dropped while committing; messages are redelivered.")
            return 0
        return count
