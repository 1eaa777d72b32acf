"""The produce operator: send messages to App2App destinations from a task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_app2app.hooks.app2app import App2AppHook
from airflow_provider_app2app.hooks.produce_requests import build_messages
from airflow_provider_app2app.triggers.app2app import App2AppDeliveryTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context


class App2AppProduceOperator(BaseOperator):
    """Send one message, or several, and return the service's delivery reports.

    Returns (as XCom) a list of ``{"key", "timestamp", "recipient"}``, one per message
    in order; ``timestamp`` is ``None`` when ``wait_for_delivery`` is off.

    A retry of this task sends again: the recipient may see a message twice, so give
    messages keys (``{{ run_id }}`` is a good start) and de-duplicate on them.

    .. seealso:: the README's "Sending messages" section.

    :param to: recipient destination URI (templated); with ``content`` for one message.
    :param content: the content (templated): ``str``, ``bytes`` or a JSON-able object.
    :param key: the message key (templated), echoed in the delivery report.
    :param sender: the sending destination (templated); default: the connection's
        default destination.
    :param messages: several messages (templated), each ``{"to", "content", "key"?,
        "sender"?}``; instead of ``to``/``content``.
    :param app2app_conn_id: the ``app2app`` connection.
    :param wait_for_delivery: wait for the service's delivery reports (default true).
    :param delivery_timeout: seconds to wait for acknowledgements and reports.
    :param deferrable: hand the send and the wait to the triggerer. A triggerer
        restart while waiting sends again (keys let receivers de-duplicate).
    """

    template_fields: Sequence[str] = ("to", "content", "key", "sender", "messages")
    template_fields_renderers: ClassVar[dict[str, str]] = {"content": "json", "messages": "json"}
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        to: str | None = None,
        content: Any = None,
        key: str | None = None,
        sender: str | None = None,
        messages: list[dict[str, Any]] | None = None,
        app2app_conn_id: str = App2AppHook.default_conn_name,
        wait_for_delivery: bool = True,
        delivery_timeout: float = 60.0,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if messages is not None and (to is not None or content is not None):
            raise ValueError(
                f"Task {kwargs.get('task_id')!r}: pass either to/content for one message or "
                f"messages for several, not both."
            )
        if messages is None and to is None:
            raise ValueError(
                f"Task {kwargs.get('task_id')!r}: no message to send; pass to= and content=, "
                f"or messages=[{{'to': ..., 'content': ...}}]."
            )
        if delivery_timeout <= 0:
            raise ValueError(f"delivery_timeout={delivery_timeout!r} must be positive seconds.")
        self.to = to
        self.content = content
        self.key = key
        self.sender = sender
        self.messages = messages
        self.app2app_conn_id = app2app_conn_id
        self.wait_for_delivery = wait_for_delivery
        self.delivery_timeout = delivery_timeout
        self.deferrable = deferrable

    def _requests(self) -> list[dict[str, Any]]:
        return build_messages(
            to=self.to,
            content=self.content,
            key=self.key,
            sender=self.sender,
            messages=self.messages,
        )

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """Send, wait for the reports (or defer), return them."""
        requests = self._requests()
        if self.deferrable and self.wait_for_delivery:
            self.defer(
                trigger=App2AppDeliveryTrigger(
                    messages=requests,
                    app2app_conn_id=self.app2app_conn_id,
                    timeout=self.delivery_timeout,
                ),
                method_name="execute_complete",
            )
        hook = App2AppHook(app2app_conn_id=self.app2app_conn_id)
        reports = hook.produce(
            requests, wait_for_delivery=self.wait_for_delivery, timeout=self.delivery_timeout
        )
        self.log.info("Sent %d message(s): %s", len(reports), [r["key"] for r in reports])
        return reports

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Resume after the delivery trigger fired: return the reports or fail clearly."""
        if not event or event.get("status") != "success":
            reason = (event or {}).get("message", "the delivery trigger fired no event")
            raise App2AppProduceError(f"Sending from task {self.task_id!r} failed: {reason}")
        reports: list[dict[str, Any]] = event["reports"]
        self.log.info("Delivered %d message(s): %s", len(reports), [r["key"] for r in reports])
        return reports


class App2AppProduceError(RuntimeError):
    """Sending failed; the message names the cause and the fix."""
