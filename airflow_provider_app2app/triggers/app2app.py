"""Triggers that wait on App2App: for a message, for delivery reports, and for every message.

* :class:`App2AppMessageTrigger` fires once, for the first message at a destination
  that matches a declarative filter (the deferrable sensor's trigger).
* :class:`App2AppDeliveryTrigger` sends messages and fires when the service confirmed
  their delivery (the deferrable produce operator's trigger).
* :class:`App2AppWatcherTrigger` fires for every matching message (event-driven
  scheduling through ``AssetWatcher``/``MessageQueueTrigger``); it never fires an
  error event: it logs and reconnects.

Commit semantics are explained in :mod:`.destination_stream`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_app2app.client.errors import DecryptionError, InvalidSignatureError
from airflow_provider_app2app.hooks.app2app import App2AppHook, receipts_to_xcom
from airflow_provider_app2app.hooks.produce_requests import decode_request
from airflow_provider_app2app.protocol.errors import App2AppError, MalformedPayloadError
from airflow_provider_app2app.protocol.matching import MessageFilter
from airflow_provider_app2app.triggers.destination_stream import (
    SHARED_STREAMS_AVAILABLE,
    Broadcast,
    DestinationStreamProducer,
    StreamSettings,
    destination_state,
)
from airflow_provider_app2app.triggers.events import (
    ContentFormat,
    check_content_format,
    error_event,
    fire,
    message_to_xcom,
    success_event,
)

if TYPE_CHECKING:
    from airflow_provider_app2app.client import AsyncApp2AppClient
    from airflow_provider_app2app.client.tracking import DeliveredMessage

log = logging.getLogger(__name__)

DEFAULT_RETENTION = 300.0
DEFAULT_READ_AHEAD = 500


async def open_subscription(conn_id: str, destination: str, read_ahead: int) -> AsyncApp2AppClient:
    """A connected client subscribed to ``destination`` with explicit commits."""
    hook = App2AppHook(app2app_conn_id=conn_id)
    client = await hook.aget_client(tuning={"auto_commit": False, "read_ahead": read_ahead})
    try:
        await client.connect()
        await client.subscribe([destination])
    except BaseException:
        await client.close()
        raise
    return client


class App2AppMessageTrigger(BaseEventTrigger):
    """Fires when a message matching ``match`` arrives at ``destination``.

    What is committed when: on Airflow ≥ 3.3 in a triggerer, every waiter on the same
    (connection, destination) shares one subscription and a message is committed only
    after Airflow persisted the trigger event that claimed it; a message no waiter
    claims is held for ``retention`` seconds for waiters that join later, then
    committed with a warning (and forwarded to ``dead_letter_destination``). Run on
    its own (``airflow dags test``, Airflow 3.2, a non-deferrable sensor) the trigger
    subscribes by itself: it commits the match, and every message delivered before
    it, just before firing, so it serves one waiter per destination at a time.
    Guarantee: at-least-once; a message may be seen again after a crash.

    :param destination: URI of the subscribed destination (of the connection's membership).
    :param app2app_conn_id: the ``app2app`` connection.
    :param match: the filter, as :meth:`MessageFilter.to_dict` (key, key_match,
        sender, json_field, json_value).
    :param content_format: how the content goes into the event: text, json or base64.
    :param retention: seconds an unclaimed message is held for a waiter that joins later.
    :param dead_letter_destination: where messages nobody claimed are forwarded.
    :param read_ahead: how many uncommitted messages the service may deliver ahead.
    :param use_shared_stream: share one subscription per destination on Airflow ≥ 3.3.
    :param deadline: epoch seconds after which a standalone ``run()`` fires a
        ``timeout`` event (the triggerer enforces the task's timeout by itself; this
        covers ``airflow dags test`` and non-deferrable sensors).
    """

    def __init__(
        self,
        *,
        destination: str,
        app2app_conn_id: str = App2AppHook.default_conn_name,
        match: Mapping[str, Any] | None = None,
        content_format: ContentFormat = "text",
        retention: float = DEFAULT_RETENTION,
        dead_letter_destination: str | None = None,
        read_ahead: int = DEFAULT_READ_AHEAD,
        use_shared_stream: bool = True,
        deadline: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.deadline = None if deadline is None else float(deadline)
        self.destination = destination
        self.app2app_conn_id = app2app_conn_id
        self.match = MessageFilter.from_dict(match).to_dict()
        self.content_format = check_content_format(content_format)
        self.retention = float(retention)
        self.dead_letter_destination = dead_letter_destination
        self.read_ahead = int(read_ahead)
        self.use_shared_stream = bool(use_shared_stream)
        self._client: AsyncApp2AppClient | None = None

    @property
    def message_filter(self) -> MessageFilter:
        """The filter, rebuilt from the serialisable ``match``."""
        return MessageFilter.from_dict(self.match)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-native kwargs."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "destination": self.destination,
                "app2app_conn_id": self.app2app_conn_id,
                "match": dict(self.match),
                "content_format": self.content_format,
                "retention": self.retention,
                "dead_letter_destination": self.dead_letter_destination,
                "read_ahead": self.read_ahead,
                "use_shared_stream": self.use_shared_stream,
                "deadline": self.deadline,
            },
        )

    # ------------------------------------------------------------ event payloads

    def _event(self, message: DeliveredMessage) -> TriggerEvent:
        try:
            payload = success_event(message=message_to_xcom(message, self.content_format))
        except MalformedPayloadError as exc:
            payload = error_event(f"{exc} (content_format={self.content_format!r}).")
        return fire(payload)

    # ------------------------------------------------------ standalone: run()

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Subscribe on its own, wait for the match, commit through it, fire once."""
        wanted = self.message_filter
        try:
            self._client = client = await open_subscription(
                self.app2app_conn_id, self.destination, self.read_ahead
            )
        except App2AppError as exc:
            yield fire(error_event(str(exc)))
            return
        log.info("Waiting on %s for %s.", self.destination, wanted.describe())
        passed: list[tuple[DeliveredMessage, float]] = []
        try:
            while True:
                if self.deadline is not None and time.time() >= self.deadline:
                    await self.cleanup()
                    yield fire(self._timeout_event(wanted))
                    return
                message = await self._next(client, passed)
                if message is None:
                    continue
                if not wanted.matches(message):
                    log.info(
                        "Message %r from %s is not the one waited for (%s).",
                        message.key,
                        message.sender,
                        wanted.describe(),
                    )
                    passed.append((message, time.monotonic()))
                    continue
                log.info("Message %r from %s matched; committing it.", message.key, message.sender)
                for skipped, _ in passed:
                    self._warn_unclaimed(skipped)
                await client.commit(message)
                event = self._event(message)
                # Close before firing: `airflow dags test` never resumes the generator.
                await self.cleanup()
                yield event
                return
        except App2AppError as exc:
            await self.cleanup()
            yield fire(error_event(str(exc)))
        finally:
            await self.cleanup()

    async def _next(
        self, client: AsyncApp2AppClient, passed: list[tuple[DeliveredMessage, float]]
    ) -> DeliveredMessage | None:
        """The next message; commits passed-over messages whose retention ran out."""
        timeout = None
        if passed:
            timeout = max(0.0, passed[0][1] + self.retention - time.monotonic())
        if self.deadline is not None:
            left = max(0.0, self.deadline - time.time())
            timeout = left if timeout is None else min(timeout, left)
        try:
            return await client.receive(timeout)
        except TimeoutError:
            if not passed or passed[0][1] + self.retention > time.monotonic():
                return None  # the deadline, checked by the caller
            expired, _ = passed.pop(0)
            self._warn_unclaimed(expired)
            await client.commit(expired)
            return None
        except (DecryptionError, InvalidSignatureError, MalformedPayloadError) as exc:
            # The message holds a commit slot: it is committed with the next match.
            log.error("Skipping a message on %s: %s", self.destination, exc)
            return None

    def _timeout_event(self, wanted: MessageFilter) -> dict[str, Any]:
        return {
            "status": "timeout",
            "message": f"No message matching {wanted.describe()} arrived at "
            f"{self.destination} in time; check that the sender uses the same key and "
            f"destination, or raise the sensor's timeout.",
        }

    def _warn_unclaimed(self, message: DeliveredMessage) -> None:
        log.warning(
            "Message %r from %s on %s was not claimed by this waiter; committing it "
            "(a standalone trigger serves one waiter per destination).",
            message.key,
            message.sender,
            self.destination,
        )

    async def cleanup(self) -> None:
        """Close the trigger's own connection, if it has one."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # --------------------------------------------- Airflow ≥ 3.3: shared stream

    def shared_stream_key(self) -> Hashable | None:
        """``("app2app", conn_id, destination)`` on Airflow ≥ 3.3, else ``None``."""
        if not (self.use_shared_stream and SHARED_STREAMS_AVAILABLE):
            return None
        return ("app2app", self.app2app_conn_id, self.destination)

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> DestinationStreamProducer:
        """One subscription per (connection, destination), committing in ack mode."""
        conn_id = kwargs.get("app2app_conn_id", App2AppHook.default_conn_name)
        destination = kwargs["destination"]
        settings = StreamSettings(
            destination=destination,
            retention=float(kwargs.get("retention", DEFAULT_RETENTION)),
            dead_letter_destination=kwargs.get("dead_letter_destination"),
            read_ahead=int(kwargs.get("read_ahead", DEFAULT_READ_AHEAD)),
        )

        async def connect() -> AsyncApp2AppClient:
            return await open_subscription(conn_id, destination, settings.read_ahead)

        return DestinationStreamProducer(("app2app", conn_id, destination), connect, settings)

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Any]
    ) -> AsyncIterator[TriggerEvent]:
        """Claim the first broadcast message that matches; fire once; stay until ended."""
        key = self.shared_stream_key()
        state = destination_state(key)
        waiter = state.join(self.message_filter)
        log.info("Waiting on %s for %s.", self.destination, waiter.message_filter.describe())
        failed = False
        try:
            async for broadcast in shared_stream:
                if isinstance(broadcast, Broadcast) and waiter.claim(broadcast):
                    message = broadcast.held.message
                    assert message is not None
                    log.info("Message %r from %s matched.", message.key, message.sender)
                    yield self._event(message)
                # Stay subscribed (skipping everything) until Airflow ends this trigger,
                # so the claimed message's commit is not abandoned with the stream.
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException:
            failed = True  # e.g. Airflow's ack timeout: the event was not persisted
            raise
        finally:
            state.leave(waiter, failed=failed)


class App2AppWatcherTrigger(App2AppMessageTrigger):
    """Fires for every message at ``destination`` that matches ``match`` (event-driven
    scheduling); never fires an error event.

    Used through ``MessageQueueTrigger(scheme="app2app", destination=...)`` in an
    ``AssetWatcher``: each message starts a DAG run with the message (as the sensor
    returns it) in the asset event's payload. Commits follow the message trigger's
    rules: persistence-gated on a shared stream, after the event was handed to Airflow
    when run standalone. Connection problems are logged and retried with backoff.

    :param retry_delay: seconds between reconnect attempts after a failure.
    """

    def __init__(self, *, retry_delay: float = 5.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_delay = float(retry_delay)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-native kwargs."""
        classpath, kwargs = super().serialize()
        return classpath, {**kwargs, "retry_delay": self.retry_delay}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Subscribe and fire for every match, for ever; reconnect after failures."""
        wanted = self.message_filter
        while True:
            try:
                self._client = client = await open_subscription(
                    self.app2app_conn_id, self.destination, self.read_ahead
                )
                async for message in client:
                    if wanted.matches(message):
                        yield self._event(message)
                    await client.commit(message)
            except App2AppError as exc:
                log.warning(
                    "Watching %s failed (%s); retrying in %gs.",
                    self.destination,
                    exc,
                    self.retry_delay,
                )
            finally:
                await self.cleanup()
            await asyncio.sleep(self.retry_delay)

    async def filter_shared_stream(
        self, shared_stream: AsyncIterator[Any]
    ) -> AsyncIterator[TriggerEvent]:
        """Claim every broadcast message that matches and fire for each."""
        state = destination_state(self.shared_stream_key())
        waiter = state.join(self.message_filter)
        failed = False
        try:
            async for broadcast in shared_stream:
                if isinstance(broadcast, Broadcast) and waiter.claim(broadcast):
                    waiter.satisfied = False  # a watcher keeps claiming
                    message = broadcast.held.message
                    assert message is not None
                    yield self._event(message)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException:
            failed = True
            raise
        finally:
            state.leave(waiter, failed=failed)

    def _event(self, message: DeliveredMessage) -> TriggerEvent:
        try:
            return fire(message_to_xcom(message, self.content_format))
        except MalformedPayloadError:
            return fire(message_to_xcom(message, "base64"))


class App2AppDeliveryTrigger(BaseEventTrigger):
    """Sends messages and fires when the service confirmed every delivery.

    A triggerer restart while waiting sends the messages again (duplicates are
    possible: give messages keys so receivers can de-duplicate).

    :param messages: list of ``{"to", "content", "key"?, "sender"?}`` (JSON-native
        content; bytes must be sent base64-encoded by the caller).
    :param app2app_conn_id: the ``app2app`` connection.
    :param timeout: seconds to wait for the acknowledgements and delivery reports.
    """

    def __init__(
        self,
        *,
        messages: list[dict[str, Any]],
        app2app_conn_id: str = App2AppHook.default_conn_name,
        timeout: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.messages = [dict(m) for m in messages]
        self.app2app_conn_id = app2app_conn_id
        self.timeout = float(timeout)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and JSON-native kwargs."""
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "messages": [dict(m) for m in self.messages],
                "app2app_conn_id": self.app2app_conn_id,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Send, wait for every delivery report, fire with the reports."""
        hook = App2AppHook(app2app_conn_id=self.app2app_conn_id)
        started = time.monotonic()
        try:
            client = await hook.aget_client()
            async with client:
                receipts = await client.produce_many(
                    [decode_request(m) for m in self.messages],
                    wait_for_delivery=True,
                    timeout=self.timeout,
                )
        except App2AppError as exc:
            yield fire(error_event(str(exc)))
            return
        reports = receipts_to_xcom(receipts)
        log.info("%d message(s) delivered in %.2fs.", len(reports), time.monotonic() - started)
        yield fire(success_event(reports=reports))
