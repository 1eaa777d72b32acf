"""The JSON payloads the triggers fire and the tasks return as XCom.

XCom values are JSON: text content stays text, JSON content is parsed on request,
and bytes travel as base64 with an explicit ``content_encoding`` marker.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from airflow.triggers.base import TriggerEvent

from airflow_provider_app2app.protocol.errors import MalformedPayloadError
from airflow_provider_app2app.protocol.messages import ReceivedMessage

ContentFormat = Literal["text", "json", "base64"]
"""How a received message's content is put in XCom:

* ``text``: UTF-8 text; content that is not UTF-8 falls back to base64;
* ``json``: the content parsed as JSON (an error for content that is not JSON);
* ``base64``: always base64.
"""

CONTENT_FORMATS: tuple[str, ...] = get_args(ContentFormat)


def check_content_format(value: str) -> ContentFormat:
    """Validate a ``content_format`` argument.

    :raises ValueError: naming the accepted values.
    """
    if value not in CONTENT_FORMATS:
        raise ValueError(
            f"content_format={value!r} is not supported; use one of {', '.join(CONTENT_FORMATS)}."
        )
    return value  # type: ignore[return-value]


def message_to_xcom(message: ReceivedMessage, content_format: ContentFormat) -> dict[str, Any]:
    """The matched message as a JSON-native dict.

    :raises MalformedPayloadError: for ``json`` when the content is not JSON.
    """
    content: Any
    if content_format == "base64":
        content, encoding = message.content_base64(), "base64"
    elif content_format == "json":
        content, encoding = message.json(), "json"
    else:
        try:
            content, encoding = message.text(), "text"
        except MalformedPayloadError:
            content, encoding = message.content_base64(), "base64"
    return {
        "key": message.key,
        "sender": message.sender,
        "recipient": message.recipient,
        "content": content,
        "content_encoding": encoding,
        "timestamp": message.timestamp_ms,
        "signature_status": message.signature_status,
        "encrypted": message.encrypted,
    }


def success_event(**payload: Any) -> dict[str, Any]:
    """A successful trigger event's payload."""
    return {"status": "success", **payload}


def error_event(message: str, **payload: Any) -> dict[str, Any]:
    """A failed trigger event's payload; ``message`` names what happened and the fix."""
    return {"status": "error", "message": message, **payload}


def fire(payload: dict[str, Any]) -> TriggerEvent:
    """A trigger event with ``payload`` (Airflow's class is not typed)."""
    return TriggerEvent(payload)  # type: ignore[no-untyped-call]
