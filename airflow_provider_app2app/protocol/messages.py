"""The message model and both payload dialects of PROTOCOL.md §2–§3.

Producing, the service accepts two shapes of message:

* *proven* (the vendor's own client): ``{"headers": {"from", "to", "signature"?}, "content"}``
* *documented* (the doc page): ``{"from", "to", "content", "signature"?}``

Receiving, a managed destination gets ``{"headers": {"from", "to"}, "content"}`` as an
object (proven) or as a JSON string (documented); an externally-managed destination
gets a PKCS#7 PEM whose plaintext is the same document with a ``signature`` header.
Delivery reports are ``{"key", "timestamp"}`` as an object or a JSON string.

Content travels as text when it is UTF-8 and as bytes otherwise; a ``Buffer`` as
Node's ``JSON.stringify`` writes it (``{"type": "Buffer", "data": [...]}``) is read
as bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from airflow_provider_app2app.protocol.errors import MalformedPayloadError

PayloadDialect = Literal["proven", "documented"]
"""How a produced message is shaped: nested ``headers`` or flat."""

PayloadFormat = Literal["object", "json"]
"""How a delivered message or report is sent: an object, or that object as a JSON string."""

SignatureStatus = Literal["unsigned", "verified", "unknown_sender", "invalid"]
"""What is known of a received message's signature."""

DeliveryEvent = Literal["data", "message"]
"""The event names a delivered message can arrive under (treated alike)."""

DELIVERY_EVENTS: tuple[str, ...] = get_args(DeliveryEvent)
PEM_ENVELOPE_MARKER = "-----BEGIN PKCS7-----"


def _decode_signature(value: object) -> bytes:
    # Imported on use: cryptography is a heavy import for code that only parses.
    from airflow_provider_app2app.protocol.crypto import decode_signature

    return decode_signature(value)


def encode_content(content: object) -> bytes:
    """Content as bytes: ``bytes`` as they are, ``str`` as UTF-8, anything else as JSON.

    :raises MalformedPayloadError: for an object that JSON cannot encode.
    """
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if isinstance(content, str):
        return content.encode("utf-8")
    try:
        return json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MalformedPayloadError(
            f"Message content of type {type(content).__name__} cannot be sent ({exc}); "
            f"pass str, bytes or a JSON-serialisable object."
        ) from None


def wire_content(content: bytes) -> str | bytes:
    """Content as it goes on the wire: text when it is valid UTF-8, else bytes."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content


def json_content(content: bytes) -> str | dict[str, Any]:
    """Content inside a JSON document: text, or a Node ``Buffer`` object for bytes."""
    text = wire_content(content)
    if isinstance(text, str):
        return text
    return {"type": "Buffer", "data": list(content)}


def _content_bytes(value: object, where: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Mapping) and value.get("type") == "Buffer":
        data = value.get("data")
        if isinstance(data, list) and all(
            isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in data
        ):
            return bytes(data)
    if value is None:
        raise MalformedPayloadError(f"The {where} has no content; add a 'content' field.")
    if isinstance(value, dict | list | int | float | bool):
        return encode_content(value)
    raise MalformedPayloadError(
        f"The {where} content is a {type(value).__name__}; expected text or bytes."
    )


def _uri(value: object, name: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise MalformedPayloadError(
            f"The {where} needs a '{name}' destination URI (a non-empty string), "
            f"got {type(value).__name__}."
        )
    return value


def _as_document(payload: object, where: str) -> Mapping[str, Any]:
    if isinstance(payload, bytes | bytearray):
        try:
            payload = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPayloadError(f"The {where} is bytes that are not UTF-8 JSON.") from None
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise MalformedPayloadError(f"The {where} is a string but not JSON ({exc}).") from None
    if not isinstance(payload, Mapping):
        raise MalformedPayloadError(
            f"The {where} must be an object (or its JSON text), got {type(payload).__name__}."
        )
    return payload


def _optional_key(key: object) -> str | None:
    if key is None or key == "":
        return None
    if isinstance(key, str):
        return key
    if isinstance(key, int | float) and not isinstance(key, bool):
        return str(key)
    raise MalformedPayloadError(f"A message key must be a string, got {type(key).__name__}.")


def _optional_timestamp(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


@dataclass(frozen=True)
class OutboundMessage:
    """A message to produce.

    :param sender: URI of the sending destination (one of the caller's membership).
    :param recipient: URI of the receiving destination.
    :param content: the content bytes.
    :param key: optional correlation key, echoed in the delivery report.
    :param signature: RSA-SHA256 signature of ``content``; required when the sender is
        externally managed.
    """

    sender: str
    recipient: str
    content: bytes
    key: str | None = None
    signature: bytes | None = None

    def to_payload(self, dialect: PayloadDialect = "proven") -> dict[str, Any]:
        """The ``produce`` event's message argument in the given dialect."""
        if dialect == "proven":
            headers: dict[str, Any] = {"from": self.sender, "to": self.recipient}
            if self.signature is not None:
                headers["signature"] = self.signature
            return {"headers": headers, "content": wire_content(self.content)}
        if dialect == "documented":
            flat: dict[str, Any] = {
                "from": self.sender,
                "to": self.recipient,
                "content": wire_content(self.content),
            }
            if self.signature is not None:
                flat["signature"] = self.signature
            return flat
        raise ValueError(f"Unknown payload dialect {dialect!r}; use 'proven' or 'documented'.")


def parse_produce_payload(message: object, key: object = None) -> OutboundMessage:
    """Read a ``produce`` event's message in either dialect (what the service does).

    :raises MalformedPayloadError: for a payload of the wrong shape.
    """
    where = "produced message"
    document = _as_document(message, where)
    headers = document.get("headers")
    source: Mapping[str, Any]
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise MalformedPayloadError("The produced message's 'headers' must be an object.")
        source = headers
    else:
        source = document
    raw_signature = source.get("signature", document.get("signature"))
    return OutboundMessage(
        sender=_uri(source.get("from"), "from", where),
        recipient=_uri(source.get("to"), "to", where),
        content=_content_bytes(document.get("content"), where),
        key=_optional_key(key),
        signature=None if raw_signature is None else _decode_signature(raw_signature),
    )


@dataclass(frozen=True)
class ReceivedMessage:
    """A message delivered to a subscribed destination.

    :param key: the producer's key, or ``None``.
    :param sender: URI of the sending destination.
    :param recipient: URI of the receiving destination.
    :param content: the content bytes (see :meth:`text` and :meth:`json`).
    :param timestamp_ms: the service's timestamp in milliseconds since the epoch.
    :param signature: the sender's signature, for externally-managed senders.
    :param signature_status: whether that signature was checked and how it went.
    :param encrypted: whether the message arrived as a PKCS#7 envelope.
    """

    key: str | None
    sender: str
    recipient: str
    content: bytes
    timestamp_ms: int | None = None
    signature: bytes | None = None
    signature_status: SignatureStatus = "unsigned"
    encrypted: bool = False

    def text(self) -> str:
        """The content decoded as UTF-8.

        :raises MalformedPayloadError: when the content is not UTF-8.
        """
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedPayloadError(
                f"Message {self.key!r} from {self.sender} is binary, not UTF-8 text; "
                f"read it as bytes or base64."
            ) from None

    def json(self) -> Any:
        """The content parsed as JSON.

        :raises MalformedPayloadError: when the content is not JSON.
        """
        try:
            return json.loads(self.text())
        except json.JSONDecodeError as exc:
            raise MalformedPayloadError(
                f"Message {self.key!r} from {self.sender} is not JSON ({exc}); "
                f"read it as text instead."
            ) from None

    def content_base64(self) -> str:
        """The content as base64 text."""
        return base64.b64encode(self.content).decode("ascii")


def is_envelope(payload: object) -> bool:
    """Whether a delivered payload is a PKCS#7 PEM (externally-managed recipient)."""
    if isinstance(payload, bytes | bytearray):
        return PEM_ENVELOPE_MARKER.encode() in bytes(payload[:200])
    return isinstance(payload, str) and PEM_ENVELOPE_MARKER in payload[:200]


def parse_message_document(
    payload: object,
    key: object = None,
    timestamp: object = None,
    *,
    encrypted: bool = False,
) -> ReceivedMessage:
    """Read a delivered message document (object, JSON string, or decrypted bytes).

    The signature, when present, is kept but not checked: ``signature_status`` is
    ``"unsigned"`` until the caller verifies it.

    :raises MalformedPayloadError: for a document of the wrong shape.
    """
    where = "delivered message"
    document = _as_document(payload, where)
    headers = document.get("headers", document)
    if not isinstance(headers, Mapping):
        raise MalformedPayloadError("The delivered message's 'headers' must be an object.")
    raw_signature = headers.get("signature", document.get("signature"))
    return ReceivedMessage(
        key=_optional_key(key),
        sender=_uri(headers.get("from"), "from", where),
        recipient=_uri(headers.get("to"), "to", where),
        content=_content_bytes(document.get("content"), where),
        timestamp_ms=_optional_timestamp(timestamp),
        signature=None if raw_signature is None else _decode_signature(raw_signature),
        encrypted=encrypted,
    )


def delivery_document(
    sender: str, recipient: str, content: bytes, signature: bytes | None = None
) -> dict[str, Any]:
    """The document the service delivers (and, for external recipients, encrypts).

    A signature is written as Node writes a ``Buffer`` in JSON, the vendor's form.
    """
    headers: dict[str, Any] = {"from": sender, "to": recipient}
    if signature is not None:
        headers["signature"] = {"type": "Buffer", "data": list(signature)}
    return {"headers": headers, "content": json_content(content)}


def format_payload(document: Mapping[str, Any], payload_format: PayloadFormat) -> object:
    """A document as an object or as its JSON text."""
    if payload_format == "json":
        return json.dumps(document, separators=(",", ":"))
    return dict(document)


@dataclass(frozen=True)
class DeliveryReport:
    """The service's confirmation that a produced message was durably accepted.

    :param key: the key the message was produced with, or ``None``.
    :param timestamp_ms: the service's timestamp in milliseconds since the epoch.
    """

    key: str | None
    timestamp_ms: int | None

    def to_document(self) -> dict[str, Any]:
        """The report as the proven dialect sends it."""
        return {"key": self.key, "timestamp": self.timestamp_ms}


def parse_delivery_report(payload: object) -> DeliveryReport:
    """Read a ``delivery-report`` event given as an object or a JSON string.

    :raises MalformedPayloadError: for a report of the wrong shape.
    """
    document = _as_document(payload, "delivery report")
    return DeliveryReport(
        key=_optional_key(document.get("key")),
        timestamp_ms=_optional_timestamp(document.get("timestamp")),
    )
