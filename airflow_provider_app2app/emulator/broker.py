"""The service's behaviour, free of Socket.IO: logs, subscribers, windows and batches.

This module owns the delivery semantics of PROTOCOL.md §4, in plain words:

* Every destination has **one ordered log** and **one committed position**. A message
  enters the log only once the store has made it durable; only then is the producer
  acknowledged (``"Message sent."``) and sent its ``delivery-report``.
* Of the connections subscribed to a destination, the **first one is active** and
  receives its messages; the others are standbys, in subscribe order, and the next one
  takes over when the active one disconnects.
* With ``auto_commit=true`` a message counts as committed when it is sent. With
  ``auto_commit=false`` a connection may have at most ``read_ahead`` delivered but
  uncommitted messages outstanding; each ``commit`` event commits the *oldest*
  outstanding one (commits are counted, in delivery order). When a connection goes,
  every message it did not commit is delivered again, to the next active subscriber or
  to the next one that subscribes. Delivery is therefore at-least-once, in log order.
* On the producing side, ``batch_size`` and ``batch_timeout`` group a connection's
  ``produce`` events: a batch is sealed when it is full or ``batch_timeout`` ms after
  its first message, stored in one write, and then acknowledged and reported.
* Ownership: a credential subscribes to, and sends from, only its own membership's
  destinations; a message may go to any destination that exists. A message from an
  externally-managed destination must carry a valid RSA-SHA256 signature; a message to
  one is delivered as a PKCS#7 envelope for its certificate.

The socket layer (:mod:`.transport`) turns events into calls on :class:`Broker` and
gives each connection a :class:`Peer` to emit through.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, Protocol

from airflow_provider_app2app.emulator.config import Credential, Destination, EnvironmentConfig
from airflow_provider_app2app.emulator.store import LogRecord, NewMessage, Store
from airflow_provider_app2app.protocol.crypto import EnvelopeEncoding, build_envelope, verify
from airflow_provider_app2app.protocol.endpoint import TuningParameters
from airflow_provider_app2app.protocol.errors import App2AppError, SignatureError
from airflow_provider_app2app.protocol.messages import (
    DeliveryEvent,
    DeliveryReport,
    PayloadFormat,
    delivery_document,
    format_payload,
    parse_produce_payload,
    wire_content,
)

log = logging.getLogger(__name__)

Generation = Literal["EIO3", "EIO4"]
"""The Engine.IO protocol generation of a connection."""

AckResult = tuple[str | None, str | None]
"""What an acknowledged event answers: ``(error, None)`` or ``(None, result)``."""

DEFAULT_MAX_CONTENT_BYTES = 1024 * 1024
KNOWN_EVENTS = ("subscribe", "produce", "commit")
_YIELD_EVERY = 64


@dataclass(frozen=True)
class BrokerSettings:
    """Behaviour switches of the emulated service.

    :param delivery_event: the event messages are delivered under: ``"data"`` (the
        vendor's client) or ``"message"`` (the doc page).
    :param payload_format: delivered messages and delivery reports as objects
        (``"object"``) or as JSON strings (``"json"``).
    :param envelope_encoding: PKCS#7 envelopes for externally-managed recipients in
        node-forge's BER form (``"ber"``, like the service) or strict ``"der"``.
    :param max_content_bytes: the largest message content accepted.
    :param max_subscribe_destinations: the most destinations one ``subscribe`` may list.
    """

    delivery_event: DeliveryEvent = "data"
    payload_format: PayloadFormat = "object"
    envelope_encoding: EnvelopeEncoding = "ber"
    max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES
    max_subscribe_destinations: int = 256


class Peer(Protocol):
    """The socket end of a connection: how the broker sends it events."""

    async def emit(self, event: str, *args: object) -> None:
        """Send ``event`` with ``args``; must not raise when the socket is gone."""


class Rejected(App2AppError):
    """An event was refused; the message is the ack error the client gets."""


@dataclass
class _Pending:
    message: NewMessage
    future: asyncio.Future[LogRecord]


@dataclass(eq=False)
class Connection:
    """One authenticated socket connection, whatever its protocol generation.

    :param id: the connection's ID (its Socket.IO session ID).
    :param peer: how to send it events.
    :param credential: the app credential it authenticated with.
    :param tuning: its handshake tuning parameters.
    :param generation: ``"EIO3"`` or ``"EIO4"``.
    """

    id: str
    peer: Peer
    credential: Credential
    tuning: TuningParameters
    generation: Generation
    connected_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    subscriptions: list[_DestinationState] = field(default_factory=list)
    outstanding: deque[tuple[_DestinationState, int]] = field(default_factory=deque)
    batch: list[_Pending] = field(default_factory=list)
    batch_timer: asyncio.TimerHandle | None = None
    open: bool = True
    produced: int = 0
    batches: int = 0
    delivered: int = 0
    commits: int = 0

    @property
    def membership(self) -> str:
        """The membership the connection acts for."""
        return self.credential.membership

    @property
    def label(self) -> str:
        """How log lines name the connection (no secrets)."""
        return f"{self.credential.username}@{self.generation}/{self.id}"

    def window_open(self) -> bool:
        """Whether another message may be delivered under ``read_ahead``."""
        return self.tuning.auto_commit or len(self.outstanding) < self.tuning.read_ahead


@dataclass(eq=False)
class _DestinationState:
    config: Destination
    length: int = 0
    committed: int = 0
    committed_durable: int = 0
    delivered: int = 0
    tail: deque[LogRecord] = field(default_factory=deque)
    arrived: dict[int, LogRecord] = field(default_factory=dict)
    subscribers: list[Connection] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None
    commit_writer: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        return self.config.uri

    @property
    def active(self) -> Connection | None:
        return self.subscribers[0] if self.subscribers else None

    def add(self, record: LogRecord) -> None:
        """Take a stored record; the log grows over contiguous sequence numbers only."""
        self.arrived[record.seq] = record
        while self.length + 1 in self.arrived:
            self.length += 1
            self.tail.append(self.arrived.pop(self.length))

    def advance_commit(self, seq: int) -> bool:
        """Move the committed position to ``seq``; ``False`` when it was already there."""
        if seq <= self.committed:
            return False
        while self.tail and self.tail[0].seq <= seq:
            self.tail.popleft()
        self.committed = seq
        self.delivered = max(self.delivered, seq)
        return True


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _uri_list(value: object, limit: int) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise Rejected(
            f"subscribe expects a list of destination URIs, got {type(value).__name__}; "
            f"emit subscribe([uri, ...])."
        )
    if not value:
        raise Rejected("subscribe got an empty list; name at least one destination URI.")
    if len(value) > limit:
        raise Rejected(f"subscribe lists {len(value)} destinations; the limit is {limit}.")
    return list(dict.fromkeys(value))


class Broker:
    """The emulated App2App service behind the socket (see the module docstring).

    :param environment: memberships, credentials and destinations.
    :param store: where logs and committed positions are kept.
    :param settings: behaviour switches.
    """

    def __init__(
        self,
        environment: EnvironmentConfig,
        store: Store,
        settings: BrokerSettings | None = None,
    ) -> None:
        self.environment = environment
        self.store = store
        self.settings = settings or BrokerSettings()
        self.connections: dict[str, Connection] = {}
        self._destinations = {d.uri: _DestinationState(d) for d in environment.destinations}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the store and restore every log and committed position from it."""
        states = await self.store.open()
        for uri, state in states.items():
            dest = self._destinations.get(uri)
            if dest is None:
                log.warning(
                    "The store holds %d messages for %s, which is not configured; ignoring.",
                    state.length,
                    uri,
                )
                continue
            dest.length = dest.committed = dest.committed_durable = dest.delivered = state.committed
            for record in state.uncommitted:
                dest.add(record)
            if dest.length != state.length:
                log.error("The log of %s is not contiguous in the store.", uri)
            if dest.length:
                log.info(
                    "Restored %s: %d messages, committed position %d.",
                    uri,
                    dest.length,
                    dest.committed,
                )

    async def close(self) -> None:
        """Store sealed-but-unstored batches, finish writes and close the store."""
        self._closed = True
        for conn in list(self.connections.values()):
            self.disconnect(conn)
        pending = [t for t in self._tasks if not t.done()]
        for task in pending:
            if task.get_name().startswith("pump"):
                task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self.store.close()

    def _spawn(self, coroutine: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Background task %s failed", task.get_name(), exc_info=task.exception())

    # ---------------------------------------------------------------- connections

    def connect(
        self,
        connection_id: str,
        peer: Peer,
        credential: Credential,
        tuning: TuningParameters,
        generation: Generation,
    ) -> Connection:
        """Register an authenticated connection."""
        conn = Connection(connection_id, peer, credential, tuning, generation)
        self.connections[connection_id] = conn
        log.info(
            "Connected %s (membership %s; auto_commit=%s read_ahead=%d batch_size=%d "
            "batch_timeout=%d).",
            conn.label,
            conn.membership,
            str(tuning.auto_commit).lower(),
            tuning.read_ahead,
            tuning.batch_size,
            tuning.batch_timeout,
        )
        return conn

    def disconnect(self, conn: Connection) -> None:
        """Forget a connection: its subscriptions end and what it did not commit is
        delivered again; a batch it was filling is stored."""
        if not conn.open:
            return
        conn.open = False
        self.connections.pop(conn.id, None)
        if conn.batch:
            self._seal(conn)
        redelivered = len(conn.outstanding)
        conn.outstanding.clear()
        for dest in conn.subscriptions:
            was_active = dest.active is conn
            dest.subscribers.remove(conn)
            if was_active:
                dest.delivered = dest.committed
                self._kick(dest)
        log.info(
            "Disconnected %s%s.",
            conn.label,
            f"; {redelivered} uncommitted message(s) will be delivered again"
            if redelivered
            else "",
        )

    def _notify(self, conn: Connection, text: str) -> None:
        self._spawn(conn.peer.emit("exception", text), name=f"exception-{conn.id}")

    # ------------------------------------------------------------------ subscribe

    def _own_destinations(self, conn: Connection) -> str:
        return ", ".join(d.uri for d in self.environment.destinations_of(conn.membership))

    async def subscribe(self, conn: Connection, destinations: object) -> AckResult:
        """Handle ``subscribe(destinations)``: every URI must be the caller's own."""
        try:
            uris = _uri_list(destinations, self.settings.max_subscribe_destinations)
            for uri in uris:
                config = self.environment.destination(uri)
                if config is None:
                    raise Rejected(
                        f"Destination {uri} does not exist; subscribe to one of your "
                        f"membership's destinations: {self._own_destinations(conn)}."
                    )
                if config.membership != conn.membership:
                    raise Rejected(
                        f"Destination {uri} belongs to membership {config.membership}; "
                        f"subscribe with {config.membership}'s credentials or pick one of: "
                        f"{self._own_destinations(conn)}."
                    )
        except Rejected as exc:
            log.info("Refused subscribe from %s: %s", conn.label, exc)
            return str(exc), None
        for uri in uris:
            dest = self._destinations[uri]
            if conn in dest.subscribers:
                log.debug("%s is already subscribed to %s.", conn.label, uri)
                continue
            dest.subscribers.append(conn)
            conn.subscriptions.append(dest)
            role = "active" if dest.active is conn else f"standby #{len(dest.subscribers) - 1}"
            log.info("Subscribed %s to %s (%s).", conn.label, uri, role)
            self._kick(dest)
        return None, "Subscribed."

    # -------------------------------------------------------------------- produce

    def _accept(self, conn: Connection, payload: object, key: object) -> NewMessage:
        outbound = parse_produce_payload(payload, key)
        size, limit = len(outbound.content), self.settings.max_content_bytes
        if size > limit:
            raise Rejected(
                f"The message content is {size} bytes; this service accepts at most "
                f"{limit} bytes (emulator option --max-content-bytes)."
            )
        sender = self.environment.destination(outbound.sender)
        if sender is None:
            raise Rejected(
                f"Sender destination {outbound.sender} does not exist; send from one of "
                f"your membership's destinations: {self._own_destinations(conn)}."
            )
        if sender.membership != conn.membership:
            raise Rejected(
                f"Sender destination {sender.uri} belongs to membership {sender.membership}; "
                f"send with {sender.membership}'s credentials or from one of: "
                f"{self._own_destinations(conn)}."
            )
        recipient = self.environment.destination(outbound.recipient)
        if recipient is None:
            raise Rejected(
                f"Recipient destination {outbound.recipient} does not exist; "
                f"GET /api/v1/addressbook lists every destination of the environment."
            )
        signature = None
        if not sender.kaleido_managed:
            if outbound.signature is None:
                raise Rejected(
                    f"Sender destination {sender.uri} is externally managed, so the message "
                    f"needs a signature: sign the content with its private key "
                    f"(RSA-SHA256, PKCS#1 v1.5) and send it as headers.signature."
                )
            assert sender.certificate is not None
            try:
                verify(outbound.content, outbound.signature, sender.certificate)
            except SignatureError as exc:
                raise Rejected(
                    f"The signature of the message from {sender.uri} is not valid: {exc}"
                ) from None
            signature = outbound.signature
        return NewMessage(
            destination=recipient.uri,
            sender=sender.uri,
            content=outbound.content,
            key=outbound.key,
            signature=signature,
            timestamp_ms=_now_ms(),
        )

    async def produce(self, conn: Connection, payload: object, key: object = None) -> AckResult:
        """Handle ``produce(message, key?)``: validate, batch, store, then acknowledge.

        The ack is sent only once the message is durable; the ``delivery-report``
        follows it.
        """
        try:
            message = self._accept(conn, payload, key)
        except App2AppError as exc:
            log.info("Refused produce from %s: %s", conn.label, exc)
            return str(exc), None
        pending = _Pending(message, asyncio.get_running_loop().create_future())
        conn.batch.append(pending)
        conn.produced += 1
        if len(conn.batch) >= conn.tuning.batch_size:
            self._seal(conn)
        elif len(conn.batch) == 1:
            conn.batch_timer = asyncio.get_running_loop().call_later(
                conn.tuning.batch_timeout / 1000, self._seal, conn
            )
        try:
            record = await pending.future
        except Exception as exc:
            return f"The emulator could not store the message ({exc}); send it again.", None
        log.debug(
            "Stored message %d for %s from %s (key %r).",
            record.seq,
            message.destination,
            message.sender,
            message.key,
        )
        return None, "Message sent."

    def _seal(self, conn: Connection) -> None:
        if conn.batch_timer is not None:
            conn.batch_timer.cancel()
            conn.batch_timer = None
        batch, conn.batch = conn.batch, []
        if batch:
            conn.batches += 1
            self._spawn(self._store_batch(conn, batch), name=f"batch-{conn.id}")

    async def _store_batch(self, conn: Connection, batch: list[_Pending]) -> None:
        try:
            records = await self.store.append([p.message for p in batch])
        except Exception as exc:
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(exc)
            return
        touched: dict[str, _DestinationState] = {}
        for record in records:
            dest = self._destinations[record.message.destination]
            dest.add(record)
            touched[dest.uri] = dest
        for pending, record in zip(batch, records, strict=True):
            if not pending.future.done():
                pending.future.set_result(record)
        for dest in touched.values():
            self._kick(dest)
        # Let the produce handlers send their acks first: reports follow acks.
        await asyncio.sleep(0)
        if not conn.open:
            return
        for record in records:
            report = DeliveryReport(record.message.key, record.message.timestamp_ms)
            await conn.peer.emit(
                "delivery-report",
                format_payload(report.to_document(), self.settings.payload_format),
            )

    # -------------------------------------------------------------------- deliver

    def _kick(self, dest: _DestinationState) -> None:
        active = dest.active
        if self._closed or active is None or dest.delivered >= dest.length:
            return
        if not active.window_open():
            return
        if dest.pump is None or dest.pump.done():
            dest.pump = self._spawn(self._pump(dest), name=f"pump-{dest.config.name}")

    def _payload(self, record: LogRecord) -> object:
        message = record.message
        recipient = self._destinations[message.destination].config
        if recipient.kaleido_managed:
            document = delivery_document(message.sender, message.destination, message.content)
            if self.settings.payload_format == "object":
                # Socket.IO carries bytes natively (as Node sends a Buffer): binary
                # content travels as an attachment, not as {"type": "Buffer", ...}.
                document["content"] = wire_content(message.content)
            return format_payload(document, self.settings.payload_format)
        document = delivery_document(
            message.sender, message.destination, message.content, message.signature
        )
        assert recipient.certificate is not None
        plaintext = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return build_envelope(plaintext, recipient.certificate, self.settings.envelope_encoding)

    async def _pump(self, dest: _DestinationState) -> None:
        sent = 0
        while True:
            conn = dest.active
            if conn is None or dest.delivered >= dest.length or not conn.window_open():
                return
            record = dest.tail[dest.delivered - dest.committed]
            dest.delivered += 1
            conn.delivered += 1
            if conn.tuning.auto_commit:
                self._committed(dest, record.seq)
            else:
                conn.outstanding.append((dest, record.seq))
            try:
                payload = self._payload(record)
            except Exception:
                log.exception("Cannot build the delivery of message %d of %s", record.seq, dest.uri)
                self._notify(
                    conn,
                    f"Message {record.seq} of {dest.uri} cannot be delivered; see the "
                    f"emulator's log. Commit it to skip it.",
                )
                continue
            await conn.peer.emit(
                self.settings.delivery_event,
                payload,
                record.message.key,
                record.message.timestamp_ms,
            )
            sent += 1
            if sent % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    # --------------------------------------------------------------------- commit

    def commit(self, conn: Connection) -> None:
        """Handle ``commit()``: commit the connection's oldest outstanding message."""
        if not conn.outstanding:
            log.debug("%s committed with nothing outstanding.", conn.label)
            if not conn.tuning.auto_commit:
                self._notify(
                    conn,
                    "commit received but no delivered message is outstanding on this "
                    "connection; emit exactly one commit per delivered message.",
                )
            return
        dest, seq = conn.outstanding.popleft()
        conn.commits += 1
        self._committed(dest, seq)
        log.debug("%s committed message %d of %s.", conn.label, seq, dest.uri)
        for subscribed in conn.subscriptions:
            if subscribed.active is conn:
                self._kick(subscribed)

    def _committed(self, dest: _DestinationState, seq: int) -> None:
        if dest.advance_commit(seq) and (dest.commit_writer is None or dest.commit_writer.done()):
            dest.commit_writer = self._spawn(
                self._write_commits(dest), name=f"commit-{dest.config.name}"
            )

    async def _write_commits(self, dest: _DestinationState) -> None:
        while dest.committed_durable < dest.committed:
            target = dest.committed
            try:
                await self.store.commit(dest.uri, target)
            except Exception as exc:
                log.error("Could not store committed position %d of %s: %s", target, dest.uri, exc)
                return
            dest.committed_durable = max(dest.committed_durable, target)

    # --------------------------------------------------------------------- others

    def unknown_event(self, conn: Connection, event: object) -> AckResult:
        """Answer an event the service does not know."""
        log.info("Ignored unknown event %r from %s.", event, conn.label)
        return (
            f"Unknown event {event!r}; this service understands "
            f"{', '.join(KNOWN_EVENTS)} (client to server).",
            None,
        )

    def status(self) -> dict[str, Any]:
        """Connections, subscriptions and positions, for ``GET /emulator/status``."""
        return {
            "store": self.store.kind,
            "settings": {
                "delivery_event": self.settings.delivery_event,
                "payload_format": self.settings.payload_format,
                "envelope_encoding": self.settings.envelope_encoding,
                "max_content_bytes": self.settings.max_content_bytes,
            },
            "connections": [self._connection_status(c) for c in self.connections.values()],
            "destinations": [self._destination_status(d) for d in self._destinations.values()],
        }

    @staticmethod
    def _connection_status(conn: Connection) -> dict[str, Any]:
        return {
            "id": conn.id,
            "generation": conn.generation,
            "username": conn.credential.username,
            "membership": conn.membership,
            "connected_at": conn.connected_at.isoformat(),
            "tuning": {
                "auto_commit": conn.tuning.auto_commit,
                "read_ahead": conn.tuning.read_ahead,
                "batch_size": conn.tuning.batch_size,
                "batch_timeout": conn.tuning.batch_timeout,
            },
            "subscriptions": [d.uri for d in conn.subscriptions],
            "active_for": [d.uri for d in conn.subscriptions if d.active is conn],
            "outstanding": len(conn.outstanding),
            "produced": conn.produced,
            "batches": conn.batches,
            "delivered": conn.delivered,
            "commits": conn.commits,
        }

    @staticmethod
    def _destination_status(dest: _DestinationState) -> dict[str, Any]:
        return {
            "uri": dest.uri,
            "name": dest.config.name,
            "membership": dest.config.membership,
            "kaleido_managed": dest.config.kaleido_managed,
            "log_length": dest.length,
            "committed": dest.committed,
            "committed_durable": dest.committed_durable,
            "delivered": dest.delivered,
            "active": dest.active.id if dest.active else None,
            "standbys": [c.id for c in dest.subscribers[1:]],
        }

    def destination_uris(self) -> Iterable[str]:
        """Every configured destination URI."""
        return self._destinations.keys()
