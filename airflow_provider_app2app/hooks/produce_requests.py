"""Normalising what a task asks to send into JSON-native produce requests."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

_FIELDS = {"to", "content", "key", "sender"}
BYTES_MARKER = "__app2app_base64__"


def _content(value: Any) -> Any:
    """bytes are carried base64-encoded in JSON (trigger kwargs must be JSON)."""
    if isinstance(value, bytes | bytearray):
        return {BYTES_MARKER: base64.b64encode(bytes(value)).decode("ascii")}
    return value


def decode_request(request: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-native request made ready for the client (bytes restored)."""
    return {**request, "content": decode_content(request.get("content"))}


def decode_content(value: Any) -> Any:
    """The inverse of the bytes encoding above; other values pass through."""
    if isinstance(value, Mapping) and set(value) == {BYTES_MARKER}:
        return base64.b64decode(value[BYTES_MARKER])
    return value


def build_messages(
    *,
    to: str | None,
    content: Any,
    key: str | None,
    sender: str | None,
    messages: Sequence[Mapping[str, Any]] | None,
) -> list[dict[str, Any]]:
    """One request per message, each ``{"to", "content", "key", "sender"}``.

    :raises ValueError: naming the message and the missing or unknown field.
    """
    items: list[Mapping[str, Any]]
    if messages is None:
        items = [{"to": to, "content": content, "key": key, "sender": sender}]
    elif isinstance(messages, list | tuple) and messages:
        items = list(messages)
    else:
        raise ValueError("messages must be a non-empty list of {'to', 'content', ...} objects.")
    requests = []
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise ValueError(f"Message {index} is a {type(item).__name__}, not an object.")
        unknown = sorted(set(item) - _FIELDS)
        if unknown:
            raise ValueError(
                f"Message {index} has unknown field(s) {', '.join(unknown)}; use to, content, "
                f"key, sender."
            )
        if not isinstance(item.get("to"), str) or not item["to"]:
            raise ValueError(f"Message {index} needs 'to': the recipient destination URI.")
        if item.get("content") is None:
            raise ValueError(f"Message {index} to {item['to']} has no content.")
        requests.append(
            {
                "to": item["to"],
                "content": _content(item["content"]),
                "key": None if item.get("key") in (None, "") else str(item["key"]),
                "sender": item.get("sender") or None,
            }
        )
    return requests
