"""Bookkeeping shared by both clients: delivery reports, commits, received messages.

None of these classes does I/O or locking; the sync client guards them with one
lock, the asyncio client touches them only from its event loop.

Delivery reports
    Every produced message gets a :class:`ProduceReceipt` *before* it is emitted.
    A report with a key resolves the oldest unresolved receipt with that key; a
    report without key resolves the oldest unresolved key-less receipt (the service
    reports in production order). When the connection drops, receipts still waiting
    for a report are marked *unconfirmed*: the report was addressed to the old
    connection and will never come.

Commits (``auto_commit=false``)
    The service counts commits in delivery order per connection. The client numbers
    the messages it hands to the application per connection and commits the oldest
    handed-out one; after a reconnect the count restarts from zero, and a commit
    for a message of an earlier connection is not sent at all (the service
    redelivers that message, so it surfaces again: at-least-once).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Literal

from airflow_provider_app2app.protocol.messages import DeliveryReport, ReceivedMessage

__all__ = [
    "CommitTracker",
    "DeliveredMessage",
    "DeliveryTracker",
    "InboundBuffer",
    "ProduceReceipt",
]

ReceiptState = Literal["sending", "acknowledged", "delivered", "failed", "unconfirmed"]


@dataclass(eq=False)
class ProduceReceipt:
    """What the client knows of one produced message.

    :param key: the message key, or ``None``.
    :param recipient: the destination the message was sent to.
    :param sequence: the client-wide production number (1-based).
    """

    key: str | None
    recipient: str
    sequence: int
    state: ReceiptState = "sending"
    ack_text: str | None = None
    report: DeliveryReport | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        """Whether the service's delivery report arrived."""
        return self.state == "delivered"

    @property
    def settled(self) -> bool:
        """Whether nothing more will happen to this receipt."""
        return self.state in ("delivered", "failed", "unconfirmed")


@dataclass(frozen=True)
class DeliveredMessage(ReceivedMessage):
    """A received message as the client hands it out.

    :param connection: the number of the connection it arrived on (1 for the first;
        each reconnect adds one).
    :param sequence: its position among the messages handed out on that connection
        (1-based), which is what ``commit`` counts.
    """

    connection: int = field(default=0, compare=False)
    sequence: int = field(default=0, compare=False)


class DeliveryTracker:
    """Correlates delivery reports with produced messages (see module docstring).

    :param retain: how many settled receipts stay findable by key.
    """

    def __init__(self, retain: int = 10_000) -> None:
        self._retain = retain
        self._sequence = 0
        self._by_key: dict[str, deque[ProduceReceipt]] = {}
        self._keyless: deque[ProduceReceipt] = deque()
        self._waiting: dict[int, ProduceReceipt] = {}
        self._recent: OrderedDict[str, ProduceReceipt] = OrderedDict()
        self._unmatched: OrderedDict[str, DeliveryReport] = OrderedDict()
        self.delivered_total = 0
        self.unmatched_total = 0

    def register(self, key: str | None, recipient: str) -> ProduceReceipt:
        """A receipt for a message about to be emitted."""
        self._sequence += 1
        receipt = ProduceReceipt(key=key, recipient=recipient, sequence=self._sequence)
        if key is None:
            self._keyless.append(receipt)
        else:
            self._by_key.setdefault(key, deque()).append(receipt)
            self._remember(key, receipt)
        self._waiting[receipt.sequence] = receipt
        return receipt

    def acknowledged(self, receipt: ProduceReceipt, text: str | None) -> None:
        """The service acknowledged the produce (its report may still come)."""
        if receipt.state == "sending":
            receipt.state = "acknowledged"
        receipt.ack_text = text

    def failed(self, receipt: ProduceReceipt, error: str) -> None:
        """The produce was rejected or never acknowledged: no report will come."""
        self._forget(receipt)
        receipt.state = "failed"
        receipt.error = error

    def report(self, report: DeliveryReport) -> ProduceReceipt | None:
        """Apply a delivery report; returns the receipt it resolved, if any."""
        queue = self._keyless if report.key is None else self._by_key.get(report.key)
        while queue:
            receipt = queue.popleft()
            if receipt.settled:
                continue
            if report.key is not None and not queue:
                self._by_key.pop(report.key, None)
            self._waiting.pop(receipt.sequence, None)
            receipt.state = "delivered"
            receipt.report = report
            self.delivered_total += 1
            return receipt
        self.unmatched_total += 1
        if report.key is not None:
            self._unmatched[report.key] = report
            while len(self._unmatched) > self._retain:
                self._unmatched.popitem(last=False)
        return None

    def connection_lost(self) -> list[ProduceReceipt]:
        """Mark every receipt still waiting for its report as unconfirmed."""
        lost = [r for r in self._waiting.values() if r.state == "acknowledged"]
        for receipt in lost:
            self._forget(receipt)
            receipt.state = "unconfirmed"
            receipt.error = "the connection dropped before the delivery report arrived"
        return lost

    def find(self, key: str) -> ProduceReceipt | DeliveryReport | None:
        """The newest receipt produced with ``key``, or an unmatched report for it."""
        return self._recent.get(key) or self._unmatched.get(key)

    def pending(self) -> list[ProduceReceipt]:
        """Receipts still waiting for an acknowledgement or a report, oldest first."""
        return sorted(self._waiting.values(), key=lambda r: r.sequence)

    def _remember(self, key: str, receipt: ProduceReceipt) -> None:
        self._recent[key] = receipt
        self._recent.move_to_end(key)
        while len(self._recent) > self._retain:
            self._recent.popitem(last=False)

    def _forget(self, receipt: ProduceReceipt) -> None:
        self._waiting.pop(receipt.sequence, None)
        if receipt.key is None:
            with contextlib.suppress(ValueError):
                self._keyless.remove(receipt)
        else:
            queue = self._by_key.get(receipt.key)
            if queue is not None:
                with contextlib.suppress(ValueError):
                    queue.remove(receipt)
                if not queue:
                    self._by_key.pop(receipt.key, None)


class CommitTracker:
    """Counts handed-out, uncommitted messages per connection (see module docstring)."""

    def __init__(self) -> None:
        self.connection = 0
        self.open = False
        self._handed_out = 0
        self._outstanding: deque[int] = deque()
        self.committed_total = 0

    def connection_opened(self) -> int:
        """A new connection: the count restarts from zero. Returns its number."""
        self.connection += 1
        self.open = True
        self._handed_out = 0
        self._outstanding.clear()
        return self.connection

    def connection_closed(self) -> int:
        """The connection dropped: its outstanding messages will be redelivered.

        :returns: how many handed-out messages were left uncommitted.
        """
        self.open = False
        dropped = len(self._outstanding)
        self._outstanding.clear()
        return dropped

    def handed_out(self, connection: int) -> int:
        """Record one message handed to the application; returns its sequence.

        A message of an earlier connection gets sequence 0 and is never committed.
        """
        if connection != self.connection or not self.open:
            return 0
        self._handed_out += 1
        self._outstanding.append(self._handed_out)
        return self._handed_out

    @property
    def outstanding(self) -> int:
        """Handed-out messages of the current connection not yet committed."""
        return len(self._outstanding)

    def take(self, through: DeliveredMessage | None = None) -> int:
        """How many ``commit`` events to send now, and mark them committed.

        :param through: commit every outstanding message up to and including this one
            (cumulative, like a Kafka offset). ``None`` commits the oldest one.
        :returns: the number of commits to emit; 0 when the message belongs to an
            earlier connection or was already committed.
        """
        if not self.open or not self._outstanding:
            return 0
        if through is None:
            count = 1
        else:
            if through.connection != self.connection or through.sequence == 0:
                return 0
            count = sum(1 for seq in self._outstanding if seq <= through.sequence)
        for _ in range(count):
            self._outstanding.popleft()
        self.committed_total += count
        return count


@dataclass
class _Item:
    connection: int
    message: ReceivedMessage | None
    error: Exception | None


class InboundBuffer:
    """Received messages (or decode errors) waiting to be handed out, in order."""

    def __init__(self) -> None:
        self._items: deque[_Item] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def put(
        self, connection: int, message: ReceivedMessage | None, error: Exception | None = None
    ) -> None:
        """Append a decoded message, or the error that decoding it raised."""
        self._items.append(_Item(connection, message, error))

    def drop_connection(self, connection: int) -> int:
        """Discard items of ``connection`` (they will be redelivered); returns how many."""
        before = len(self._items)
        self._items = deque(i for i in self._items if i.connection != connection)
        return before - len(self._items)

    def pop(self, commits: CommitTracker) -> DeliveredMessage:
        """Hand out the oldest item: its message, or raise its decode error.

        Either way the item takes its commit slot, so ``commit()`` after a decode
        error skips that message.
        """
        item = self._items.popleft()
        sequence = commits.handed_out(item.connection)
        if item.error is not None:
            raise item.error
        assert item.message is not None
        message = item.message
        return DeliveredMessage(
            key=message.key,
            sender=message.sender,
            recipient=message.recipient,
            content=message.content,
            timestamp_ms=message.timestamp_ms,
            signature=message.signature,
            signature_status=message.signature_status,
            encrypted=message.encrypted,
            connection=item.connection,
            sequence=sequence,
        )
