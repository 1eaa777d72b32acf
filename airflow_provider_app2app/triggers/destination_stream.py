"""One App2App subscription shared by every waiter on a destination, and its commits.

Commit semantics, in plain words
--------------------------------
App2App keeps one ordered log and one committed position per destination, and a
``commit`` acknowledges the *oldest* delivered-but-uncommitted message. So a message
can only be committed once everything delivered before it is committed too.

In a triggerer on Airflow ≥ 3.3, every message trigger waiting on the same
(connection, destination) joins one shared stream in *ack mode*: one Socket.IO
connection (``auto_commit=false``) feeds every waiter. For each delivered message:

1. it is broadcast to every waiter, and the first waiter whose filter matches
   *claims* it and fires its trigger event;
2. Airflow calls :meth:`DestinationStreamProducer.advance` once that event is
   confirmed persisted in the metadata database; the message is then *settled*;
3. settled messages at the head of the log are committed, in order.

A message that no waiter claims is *held* (uncommitted) for ``retention`` seconds: a
waiter that joins later gets the held messages its filter matches re-broadcast, and
claims one like any other (so that claim is persistence-gated too). A held message
whose retention ran out is committed with a warning naming its key and sender, and
forwarded to the dead-letter destination when one is configured. A claim whose
trigger event failed (ack timeout, persist failure) is released: the message is held
again for the retried waiter. Nothing is committed before Airflow persisted the event
that consumed it; a crash before that leaves it uncommitted and the service
redelivers it (at-least-once; waiters must tolerate a repeated message).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_app2app.client.errors import DecryptionError, InvalidSignatureError
from airflow_provider_app2app.protocol.errors import App2AppError, MalformedPayloadError
from airflow_provider_app2app.protocol.matching import MessageFilter

if TYPE_CHECKING:
    from airflow_provider_app2app.client import AsyncApp2AppClient
    from airflow_provider_app2app.client.tracking import DeliveredMessage

try:  # Airflow ≥ 3.3
    from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

    SHARED_STREAMS_AVAILABLE = True
except ImportError:  # Airflow 3.2: triggers run standalone
    SHARED_STREAMS_AVAILABLE = False
    SharedStreamProducer = object  # type: ignore[assignment,misc]
    AdvanceItem = Any  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

_waiter_ids = itertools.count(1)


@dataclass(eq=False)
class HeldMessage:
    """A delivered, not yet committed message, as broadcast to the waiters.

    :param message: the message (``None`` for one that could not be decoded: it is
        committed, i.e. skipped, when it reaches the head).
    :param arrived: ``time.monotonic()`` when it was delivered.
    :param connection: the client's connection number it was delivered on.
    """

    message: DeliveredMessage | None
    arrived: float
    connection: int
    claimed_by: int | None = None
    claim_broadcast: int | None = None
    settled: bool = False
    expired: bool = False
    verdict_pending: bool = False
    claimer_fate: str | None = None  # "ended" (normally) or "failed", once it left

    def claimable_by(self, waiter: Waiter) -> bool:
        """Whether ``waiter`` may claim this message now."""
        return (
            self.message is not None
            and self.claimed_by is None
            and not self.expired
            and not waiter.satisfied
            and waiter.message_filter.matches(self.message)
        )


@dataclass(frozen=True)
class Broadcast:
    """One raw event of the shared stream: a held message, sent once more.

    :param held: the message.
    :param number: this broadcast's number (a message may be broadcast again).
    """

    held: HeldMessage
    number: int


@dataclass(eq=False)
class Waiter:
    """One trigger waiting on the destination.

    :param message_filter: what it waits for.
    """

    message_filter: MessageFilter
    waiter_id: int = field(default_factory=lambda: next(_waiter_ids))
    satisfied: bool = False
    claims: list[HeldMessage] = field(default_factory=list)

    def claim(self, broadcast: Broadcast) -> bool:
        """Claim the broadcast's message if it is still free and matches."""
        held = broadcast.held
        if not held.claimable_by(self):
            return False
        held.claimed_by = self.waiter_id
        held.claim_broadcast = broadcast.number
        held.claimer_fate = None
        self.claims = [h for h in self.claims if not h.settled and h.claimed_by == self.waiter_id]
        self.claims.append(held)
        self.satisfied = True
        return True


@dataclass(eq=False)
class DestinationState:
    """What the producer and the waiters of one shared stream know of each other."""

    loop: asyncio.AbstractEventLoop
    waiters: dict[int, Waiter] = field(default_factory=dict)
    joined: deque[Waiter] = field(default_factory=deque)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    on_leave: Callable[[Waiter], None] | None = None

    def join(self, message_filter: MessageFilter) -> Waiter:
        """Register a waiter; the producer re-broadcasts held messages it matches."""
        waiter = Waiter(message_filter)
        self.waiters[waiter.waiter_id] = waiter
        self.joined.append(waiter)
        self.changed.set()
        return waiter

    def leave(self, waiter: Waiter, failed: bool) -> None:
        """Forget a waiter whose trigger ended.

        :param failed: the trigger ended with an error (e.g. Airflow's ack timeout: its
            event was not persisted) rather than being ended by Airflow after its
            event was handled.
        """
        self.waiters.pop(waiter.waiter_id, None)
        with contextlib.suppress(ValueError):
            self.joined.remove(waiter)
        for held in waiter.claims:
            if held.claimed_by == waiter.waiter_id:
                held.claimer_fate = "failed" if failed else "ended"
        if self.on_leave is not None:
            self.on_leave(waiter)


_STATES: dict[Hashable, DestinationState] = {}


def destination_state(key: Hashable) -> DestinationState:
    """The state of the shared stream ``key`` in this event loop (created on first use)."""
    loop = asyncio.get_running_loop()
    state = _STATES.get(key)
    if state is None or state.loop is not loop:
        state = _STATES[key] = DestinationState(loop)
    return state


@dataclass(frozen=True)
class StreamSettings:
    """How the shared subscription behaves.

    :param destination: the subscribed destination URI.
    :param retention: seconds an unclaimed message is held before it is committed.
    :param dead_letter_destination: where expired unclaimed messages are forwarded.
    :param read_ahead: how many uncommitted messages the service may deliver ahead.
    """

    destination: str
    retention: float
    dead_letter_destination: str | None
    read_ahead: int


class HeldLog:
    """The delivered, uncommitted messages of one subscription, in delivery order.

    Commits only ever go out for the head, so that the service's counted commits
    acknowledge exactly the messages meant (see the module docstring).
    """

    def __init__(self, client: AsyncApp2AppClient, settings: StreamSettings) -> None:
        self._client = client
        self._settings = settings
        self._entries: deque[HeldMessage] = deque()
        self._lock = asyncio.Lock()
        self.committed = 0
        self.expired = 0

    def append(self, message: DeliveredMessage) -> HeldMessage:
        """Record a newly delivered message."""
        held = HeldMessage(message, time.monotonic(), message.connection)
        self._entries.append(held)
        return held

    def append_undecodable(self, connection: int) -> None:
        """Record a message the client could not hand out; it is skipped in order."""
        held = HeldMessage(None, time.monotonic(), connection, settled=True)
        self._entries.append(held)

    def unclaimed(self) -> list[HeldMessage]:
        """Messages still waiting for a claim, oldest first."""
        return [
            h
            for h in self._entries
            if h.message is not None and h.claimed_by is None and not h.expired
        ]

    def settle(self, broadcast: Broadcast, failed: int) -> None:
        """Apply Airflow's outcome for ``broadcast`` to the claim made on it, if any.

        ``failed == 0`` means every subscriber, the claimer included, resolved the
        event cleanly: the claimer's event was persisted. Otherwise some subscriber
        failed it, which may be another one (e.g. a trigger that ended before pulling
        the broadcast): the claimer's own fate decides, now if it already left, or
        when it leaves (:meth:`claimer_left`).
        """
        held = broadcast.held
        if held.message is None or held.claimed_by is None:
            return
        if held.claim_broadcast != broadcast.number:
            return
        if failed == 0 or held.claimer_fate == "ended":
            held.settled = True
        elif held.claimer_fate == "failed":
            self._release(held)
        else:
            held.verdict_pending = True

    def claimer_left(self, waiter: Waiter) -> bool:
        """Decide the claims that waited for ``waiter``'s fate; whether any changed."""
        changed = False
        for held in waiter.claims:
            if (
                held.verdict_pending
                and held.claimed_by == waiter.waiter_id
                and held.claimer_fate is not None
            ):
                held.verdict_pending = False
                if held.claimer_fate == "ended":
                    held.settled = True
                else:
                    self._release(held)
                changed = True
        return changed

    def _release(self, held: HeldMessage) -> None:
        if held.message is not None:
            log.warning(
                "The trigger event for message %r from %s was not persisted; holding the "
                "message for the next waiter.",
                held.message.key,
                held.message.sender,
            )
        held.claimed_by = None
        held.claim_broadcast = None
        held.claimer_fate = None
        held.arrived = time.monotonic()  # a fresh retention for the retried waiter

    async def commit_ready(self) -> int:
        """Commit settled (or expired) messages at the head; returns how many."""
        count = 0
        async with self._lock:
            while self._entries:
                head = self._entries[0]
                if head.connection != self._client.connection_number:
                    # Delivered on an earlier connection: the service redelivers it.
                    self._entries.popleft()
                    continue
                if not head.settled:
                    if head.claimed_by is not None or not self._expired(head):
                        break
                    head.expired = True
                    await self._give_up(head)
                if head.message is None:
                    await self._client.commit()
                else:
                    await self._client.commit(head.message)
                self._entries.popleft()
                count += 1
        self.committed += count
        if count:
            log.debug("Committed %d message(s) on %s.", count, self._settings.destination)
        return count

    def _expired(self, held: HeldMessage) -> bool:
        return time.monotonic() - held.arrived >= self._settings.retention

    async def _give_up(self, held: HeldMessage) -> None:
        self.expired += 1
        message = held.message
        if message is None:
            return
        target = self._settings.dead_letter_destination
        log.warning(
            "No waiter claimed message %r from %s on %s within %gs; committing it%s.",
            message.key,
            message.sender,
            self._settings.destination,
            self._settings.retention,
            f" and forwarding it to {target}" if target else "",
        )
        if target:
            try:
                await self._client.produce(
                    target, message.content, key=message.key, sender=self._settings.destination
                )
            except App2AppError as exc:
                log.error(
                    "Forwarding message %r to the dead-letter destination %s failed: %s",
                    message.key,
                    target,
                    exc,
                )


class DestinationStreamProducer(SharedStreamProducer):
    """The broker side of a shared stream: one subscription, persistence-gated commits.

    :param key: the shared-stream key (connection ID, destination).
    :param connect: coroutine function returning a connected, subscribed client
        (``auto_commit=false``).
    :param settings: retention, dead letter and read-ahead.
    """

    def __init__(
        self,
        key: Hashable,
        connect: Any,
        settings: StreamSettings,
    ) -> None:
        self._key = key
        self._connect = connect
        self._settings = settings
        self._client: AsyncApp2AppClient | None = None
        self._log: HeldLog | None = None
        self._broadcasts = itertools.count(1)
        self._expiry: asyncio.Task[None] | None = None
        self._pending_commit: asyncio.Future[int] | None = None

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:
        """Subscribe, then yield ``(Broadcast, Broadcast)`` for each message and re-broadcast."""
        state = destination_state(self._key)
        self._client = client = await self._connect()
        self._log = held_log = HeldLog(client, self._settings)
        state.on_leave = self._claimer_left
        self._expiry = asyncio.create_task(self._expire_loop(held_log))
        receiving: asyncio.Task[DeliveredMessage] | None = None
        try:
            while True:
                for broadcast in self._rebroadcasts(state, held_log):
                    yield broadcast, broadcast
                if receiving is None:
                    receiving = asyncio.create_task(client.receive())
                state.changed.clear()
                if state.joined:
                    continue
                changed = asyncio.create_task(state.changed.wait())
                done, _ = await asyncio.wait(
                    {receiving, changed}, return_when=asyncio.FIRST_COMPLETED
                )
                changed.cancel()
                if receiving in done:
                    finished, receiving = receiving, None
                    try:
                        message = finished.result()
                    except (DecryptionError, InvalidSignatureError, MalformedPayloadError) as exc:
                        log.error(
                            "Skipping a message on %s that cannot be handed to a waiter: %s",
                            self._settings.destination,
                            exc,
                        )
                        held_log.append_undecodable(client.connection_number)
                        await held_log.commit_ready()
                        continue
                    broadcast = Broadcast(held_log.append(message), next(self._broadcasts))
                    log.debug("Message %r from %s delivered.", message.key, message.sender)
                    yield broadcast, broadcast
        finally:
            if receiving is not None:
                receiving.cancel()

    def _rebroadcasts(self, state: DestinationState, held_log: HeldLog) -> list[Broadcast]:
        """Held messages that waiters who just joined may claim."""
        joined = list(state.joined)
        state.joined.clear()
        if not joined:
            return []
        wanted = [
            held
            for held in held_log.unclaimed()
            if any(held.claimable_by(waiter) for waiter in joined)
        ]
        return [Broadcast(held, next(self._broadcasts)) for held in wanted]

    def _claimer_left(self, waiter: Waiter) -> None:
        held_log = self._log
        if held_log is not None and held_log.claimer_left(waiter):
            self._pending_commit = asyncio.ensure_future(held_log.commit_ready())

    async def _expire_loop(self, held_log: HeldLog) -> None:
        interval = min(1.0, max(0.05, self._settings.retention / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await held_log.commit_ready()
            except App2AppError as exc:
                log.warning("Committing on %s failed: %s", self._settings.destination, exc)

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        """Settle the claims whose trigger events Airflow persisted; commit the head."""
        held_log = self._log
        if held_log is None:
            return
        for item in batch:
            broadcast = item.broker_payload
            if isinstance(broadcast, Broadcast):
                held_log.settle(broadcast, failed=item.outcome.failed)
        await held_log.commit_ready()

    async def aclose(self) -> None:
        """Stop the expiry timer and close the connection (uncommitted messages are
        redelivered by the service to the next subscriber)."""
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._expiry
        if self._client is not None:
            await self._client.close()
