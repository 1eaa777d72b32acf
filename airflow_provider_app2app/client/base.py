"""Everything the sync and asyncio clients share that is not I/O.

:class:`ClientCore` turns API calls into Socket.IO emits (payload dialect, signing,
key handling) and server events into state changes (decoded messages, delivery
reports, commits, ``exception`` events). The two clients own the transports, the
waiting and the reconnect loop; they call the core under their own
synchronisation (a lock for threads, the event loop for asyncio).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_app2app.client.decoding import MessageDecoder
from airflow_provider_app2app.client.errors import (
    ClientConfigurationError,
    DeliveryUnconfirmedError,
    ServiceError,
)
from airflow_provider_app2app.client.negotiation import GENERATION_LABELS
from airflow_provider_app2app.client.settings import ClientSettings, Generation
from airflow_provider_app2app.client.tracking import (
    CommitTracker,
    DeliveredMessage,
    DeliveryTracker,
    InboundBuffer,
    ProduceReceipt,
)
from airflow_provider_app2app.protocol.errors import App2AppError, MalformedPayloadError
from airflow_provider_app2app.protocol.messages import (
    DELIVERY_EVENTS,
    DeliveryReport,
    OutboundMessage,
    encode_content,
    parse_delivery_report,
)

__all__ = ["ClientCore", "ExceptionCallback", "ProduceRequest", "ack_error", "as_request"]

log = logging.getLogger("airflow_provider_app2app.client")

ExceptionCallback = Callable[[Any], None]
"""Receives the payload of each ``exception`` (or ``error``) event of the service."""


@dataclass(frozen=True)
class ProduceRequest:
    """One message for :meth:`produce_many`.

    :param to: the recipient destination URI.
    :param content: ``str``, ``bytes`` or a JSON-able object.
    :param key: optional correlation key.
    :param sender: the sending destination (default: the settings' ``default_sender``).
    """

    to: str
    content: Any
    key: str | None = None
    sender: str | None = None


def as_request(item: ProduceRequest | Mapping[str, Any] | tuple[Any, ...]) -> ProduceRequest:
    """Accept a :class:`ProduceRequest`, a mapping of its fields, or a tuple of them."""
    if isinstance(item, ProduceRequest):
        return item
    if isinstance(item, Mapping):
        return ProduceRequest(**item)
    if isinstance(item, tuple) and 2 <= len(item) <= 4:
        return ProduceRequest(*item)
    raise ClientConfigurationError(
        f"A message for produce_many must be a ProduceRequest, a mapping or a "
        f"(to, content[, key[, sender]]) tuple, not {type(item).__name__}."
    )


def _service_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        for name in ("message", "error", "reason"):
            if isinstance(value.get(name), str):
                return str(value[name])
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return repr(value)


def ack_error(args: tuple[Any, ...]) -> tuple[str | None, str | None]:
    """Split an acknowledgement ``(err, text)`` into ``(error text, success text)``."""
    if not args:
        return None, None
    err = args[0]
    success = _service_text(args[1]) if len(args) > 1 and args[1] is not None else None
    if err is None or err is False or err == "":
        return None, success
    return _service_text(err), success


_HINTS = {
    "produce": (
        "Send from a destination of the membership whose credentials user {user!r} "
        "holds, to a destination of this environment; an externally-managed sender "
        "needs its private key configured so that the message is signed."
    ),
    "subscribe": (
        "Subscribe only to destinations of the membership whose credentials user "
        "{user!r} holds, or connect with the credentials of the owning membership."
    ),
}


class ClientCore:
    """The shared, I/O-free half of a client.

    :param settings: the client settings.
    :param on_exception: called with each ``exception``/``error`` event payload.
    """

    def __init__(self, settings: ClientSettings, on_exception: ExceptionCallback | None) -> None:
        self.settings = settings
        self.on_exception = on_exception
        self.decoder = MessageDecoder(settings)
        self.deliveries = DeliveryTracker()
        self.commits = CommitTracker()
        self.inbound = InboundBuffer()
        self.subscriptions: list[str] = []
        self.generation: Generation | None = None
        self.fatal: App2AppError | None = None
        self.auto_commit = settings.tuning_parameters.auto_commit
        self.exceptions_total = 0

    # ------------------------------------------------------------------ producing

    def outbound(
        self, to: str, content: Any, key: str | None, sender: str | None
    ) -> OutboundMessage:
        """Build (and sign, when an identity is configured) one message."""
        sender = sender or self.settings.default_sender
        if not sender:
            raise ClientConfigurationError(
                "No sender destination: pass sender= to produce, or set default_sender "
                "in the client settings."
            )
        if not isinstance(to, str) or not to:
            raise ClientConfigurationError(
                "The recipient ('to') must be a destination URI, e.g. "
                "kld://app2app/m/<member>/e/<env>/s/<service>/d/<name>."
            )
        if key is not None and not isinstance(key, str):
            raise ClientConfigurationError(
                f"A message key must be a string, not {type(key).__name__}."
            )
        body = encode_content(content)
        identity = self.settings.identity_for(sender)
        signature = identity.sign(body) if identity is not None else None
        return OutboundMessage(
            sender=sender, recipient=to, content=body, key=key, signature=signature
        )

    def produce_args(self, message: OutboundMessage) -> tuple[Any, ...]:
        """The ``produce`` event's arguments.

        The key is always sent, ``null`` when absent, so that the acknowledgement
        stays the third argument for a server written as ``(message, key, ack)``.
        """
        return (message.to_payload(self.settings.payload_dialect), message.key)

    def service_error(self, operation: str, text: str, **context: str) -> ServiceError:
        """A :class:`ServiceError` with the service's text and the fix for ``operation``."""
        hint = _HINTS.get(operation, "Check the request.").format(user=self.settings.username)
        target = f" ({', '.join(f'{k} {v}' for k, v in context.items())})" if context else ""
        return ServiceError(
            f"The App2App service rejected {operation}{target}: {text.strip().rstrip('.')}. {hint}",
            operation=operation,
            service_text=text,
        )

    def unconfirmed_error(self, receipts: Iterable[ProduceReceipt]) -> DeliveryUnconfirmedError:
        """The error for receipts whose delivery report can no longer arrive."""
        keys = [r.key for r in receipts]
        shown = ", ".join(repr(k) for k in keys[:5]) + (" ..." if len(keys) > 5 else "")
        return DeliveryUnconfirmedError(
            f"{len(keys)} message(s) ({shown}) were acknowledged but the connection "
            f"dropped before their delivery report; they may or may not have been "
            f"stored. Produce them again if duplicates are acceptable (receivers can "
            f"de-duplicate by key).",
            keys=keys,
        )

    def resolve_targets(
        self, targets: Iterable[str | ProduceReceipt]
    ) -> list[ProduceReceipt | DeliveryReport]:
        """Receipts (or already-seen reports) for ``wait_for_delivery`` targets."""
        resolved: list[ProduceReceipt | DeliveryReport] = []
        for target in targets:
            if isinstance(target, ProduceReceipt):
                resolved.append(target)
                continue
            found = self.deliveries.find(str(target))
            if found is None:
                raise ClientConfigurationError(
                    f"No message with key {target!r} was produced by this client; wait "
                    f"for keys of messages it produced, or for receipts."
                )
            resolved.append(found)
        return resolved

    def delivery_outcome(
        self, targets: list[ProduceReceipt | DeliveryReport]
    ) -> list[DeliveryReport] | None:
        """The reports when every target is delivered, ``None`` while some wait.

        :raises DeliveryUnconfirmedError: when a target can no longer be confirmed.
        """
        lost = [
            t for t in targets if isinstance(t, ProduceReceipt) and t.settled and not t.delivered
        ]
        if lost:
            raise self.unconfirmed_error(lost)
        reports: list[DeliveryReport] = []
        for target in targets:
            if isinstance(target, DeliveryReport):
                reports.append(target)
            elif target.report is not None:
                reports.append(target.report)
            else:
                return None
        return reports

    # ------------------------------------------------------------------ receiving

    def connection_opened(self, generation: Generation) -> int:
        """A connection is up; returns its number (commit counting restarts)."""
        self.generation = generation
        number = self.commits.connection_opened()
        endpoint = self.settings.parsed_endpoint
        log.info(
            "Connected to %s as %r with the %s protocol (connection %d).",
            endpoint.console_url,
            self.settings.username,
            GENERATION_LABELS[generation],
            number,
        )
        return number

    def connection_closed(self, number: int) -> list[ProduceReceipt]:
        """The connection ``number`` dropped: reset commits, drop what will be redelivered.

        :returns: the receipts that will never get a delivery report.
        """
        if number != self.commits.connection or not self.commits.open:
            return []
        uncommitted = self.commits.connection_closed()
        dropped = 0 if self.auto_commit else self.inbound.drop_connection(number)
        lost = self.deliveries.connection_lost()
        log.warning(
            "Connection %d to %s dropped; %d handed-out and %d buffered uncommitted "
            "message(s) will be redelivered, %d delivery report(s) will not arrive.",
            number,
            self.settings.parsed_endpoint.console_url,
            uncommitted,
            dropped,
            len(lost),
        )
        return lost

    def handle_event(self, number: int, event: str, args: tuple[Any, ...]) -> None:
        """Apply one server event of connection ``number``."""
        if event in DELIVERY_EVENTS:
            self._handle_delivery(number, args)
        elif event == "delivery-report":
            self._handle_report(args)
        elif event in ("exception", "error"):
            self._handle_exception(event, args)

    def _handle_delivery(self, number: int, args: tuple[Any, ...]) -> None:
        if not self.auto_commit and (number != self.commits.connection or not self.commits.open):
            log.debug("Ignoring a message of closed connection %d; it will be redelivered.", number)
            return
        payload = args[0] if args else None
        key = args[1] if len(args) > 1 else None
        timestamp = args[2] if len(args) > 2 else None
        try:
            message = self.decoder.decode(payload, key, timestamp, self.subscriptions)
        except App2AppError as exc:
            if isinstance(exc, MalformedPayloadError):
                exc = MalformedPayloadError(
                    f"Message {key!r} delivered on connection {number} is malformed "
                    f"({exc}); it cannot be handed out. Commit it to skip it."
                )
            log.warning("Message %r could not be decoded: %s", key, exc)
            self.inbound.put(number, None, exc)
            return
        log.debug(
            "Received message %r from %s (signature %s).",
            message.key,
            message.sender,
            message.signature_status,
        )
        self.inbound.put(number, message)

    def _handle_report(self, args: tuple[Any, ...]) -> None:
        try:
            report = parse_delivery_report(args[0] if args else None)
        except MalformedPayloadError as exc:
            log.warning("Ignoring a malformed delivery report: %s", exc)
            return
        receipt = self.deliveries.report(report)
        if receipt is None:
            log.debug("Delivery report for key %r matches no produced message.", report.key)

    def _handle_exception(self, event: str, args: tuple[Any, ...]) -> None:
        payload: Any = args[0] if len(args) == 1 else list(args)
        self.exceptions_total += 1
        log.warning("The App2App service sent an %r event: %s", event, _service_text(payload))
        if self.on_exception is not None:
            try:
                self.on_exception(payload)
            except Exception:
                log.exception("The on_exception callback raised; the client carries on.")

    def next_message(self) -> DeliveredMessage:
        """Hand out the oldest buffered message (or raise its decode error)."""
        return self.inbound.pop(self.commits)

    def take_commits(self, through: DeliveredMessage | None) -> int:
        """How many ``commit`` events to send for :meth:`commit` (0 in auto-commit)."""
        if self.auto_commit:
            return 0
        count = self.commits.take(through)
        if count == 0 and through is not None:
            log.debug(
                "Not committing message %r of connection %d: it belongs to an earlier "
                "connection or is committed already; the service redelivers it.",
                through.key,
                through.connection,
            )
        return count

    def subscribed(self, destinations: Iterable[str]) -> None:
        """Remember destinations to re-subscribe after every reconnect."""
        for uri in destinations:
            if uri not in self.subscriptions:
                self.subscriptions.append(uri)
