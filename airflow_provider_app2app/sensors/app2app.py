"""The message sensor: wait at a destination for a keyed message (or any match)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from airflow_provider_app2app.hooks.app2app import App2AppHook
from airflow_provider_app2app.protocol.matching import KeyMatch, MessageFilter
from airflow_provider_app2app.triggers.app2app import (
    DEFAULT_RETENTION,
    App2AppMessageTrigger,
)
from airflow_provider_app2app.triggers.events import ContentFormat, check_content_format

if TYPE_CHECKING:
    from airflow.sdk import Context


class App2AppMessageError(AirflowException):
    """Waiting for a message failed; the message names the cause and the fix."""


class App2AppMessageSensor(BaseSensorOperator):
    """Wait for a message at an App2App destination and return it.

    The sensor always defers to :class:`App2AppMessageTrigger` (with ``timeout``);
    ``deferrable=False`` runs the same trigger inside the worker instead, with the same
    semantics. Returns (XCom) ``{"key", "sender", "recipient", "content",
    "content_encoding", "timestamp", "signature_status", "encrypted"}``.

    .. seealso:: the README's "Waiting for a message" section, and its delivery
       guarantees.

    :param destination: the destination to wait at (templated); default: the
        connection's default destination.
    :param key: the wanted message key (templated); ``None`` accepts any key.
    :param key_match: how ``key`` is compared: ``exact``, ``glob`` or ``regex``.
    :param sender: accept only messages from this destination URI (templated).
    :param json_field: dotted path into the JSON content that must equal ``json_value``.
    :param json_value: the value expected at ``json_field`` (templated).
    :param content_format: the content in the XCom: ``text`` (base64 for binary
        content), ``json`` or ``base64``.
    :param app2app_conn_id: the ``app2app`` connection.
    :param retention: seconds a message nobody waits for yet is held for a later waiter.
    :param dead_letter_destination: where messages nobody claimed are forwarded.
    :param deferrable: wait in the triggerer (default) or in the worker.
    """

    template_fields: Sequence[str] = ("destination", "key", "sender", "json_value")

    def __init__(
        self,
        *,
        destination: str | None = None,
        key: str | None = None,
        key_match: KeyMatch = "exact",
        sender: str | None = None,
        json_field: str | None = None,
        json_value: Any = None,
        content_format: ContentFormat = "text",
        app2app_conn_id: str = App2AppHook.default_conn_name,
        retention: float = DEFAULT_RETENTION,
        dead_letter_destination: str | None = None,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination = destination
        self.key = key
        self.key_match = key_match
        self.sender = sender
        self.json_field = json_field
        self.json_value = json_value
        self.content_format = check_content_format(content_format)
        self.app2app_conn_id = app2app_conn_id
        self.retention = retention
        self.dead_letter_destination = dead_letter_destination
        self.deferrable = deferrable
        # Validate the filter at parse time where nothing is templated.
        if "{{" not in str(key):
            self._filter()

    def _filter(self) -> MessageFilter:
        return MessageFilter(
            key=self.key,
            key_match=self.key_match,
            sender=self.sender,
            json_field=self.json_field,
            json_value=self.json_value,
        )

    def _destination(self) -> str:
        if self.destination:
            return self.destination
        destination = App2AppHook(app2app_conn_id=self.app2app_conn_id).default_destination()
        if not destination:
            raise App2AppMessageError(
                f"Task {self.task_id!r} has no destination to wait at; pass destination= or "
                f"set default_destination in connection {self.app2app_conn_id!r}."
            )
        return destination

    def build_trigger(self, deadline: float | None = None) -> App2AppMessageTrigger:
        """The trigger this sensor waits with."""
        return App2AppMessageTrigger(
            destination=self._destination(),
            app2app_conn_id=self.app2app_conn_id,
            match=self._filter().to_dict(),
            content_format=self.content_format,
            retention=self.retention,
            dead_letter_destination=self.dead_letter_destination,
            deadline=deadline,
        )

    def execute(self, context: Context) -> Any:
        """Defer to the trigger (or run it here when ``deferrable=False``)."""
        deadline = time.time() + self.timeout
        trigger = self.build_trigger(deadline)
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout),
            )
        event = asyncio.run(_first_event(trigger))
        try:
            return self.execute_complete(context, event)
        except App2AppMessageError as exc:
            if self.soft_fail:
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(f"Skipping (soft_fail): {exc}") from exc
            raise

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        """Return the matched message, or fail (``soft_fail`` skips) with the reason."""
        event = event or {}
        status = event.get("status")
        if status == "success":
            message = event["message"]
            self.log.info("Received message %r from %s.", message.get("key"), message.get("sender"))
            return message
        reason = event.get("message", "the trigger fired no event")
        if status == "timeout":
            raise AirflowSensorTimeout(f"Task {self.task_id!r}: {reason}")
        raise App2AppMessageError(f"Task {self.task_id!r}: {reason}")

    def poke(self, context: Context) -> bool:
        """Not used: this sensor always waits through its trigger."""
        raise App2AppMessageError(
            "App2AppMessageSensor waits through its trigger; call execute(), not poke()."
        )


async def _first_event(trigger: App2AppMessageTrigger) -> dict[str, Any]:
    events = trigger.run()
    try:
        event = await anext(events)
    finally:
        close = getattr(events, "aclose", None)
        if close is not None:
            await close()
    payload: dict[str, Any] = event.payload
    return payload
