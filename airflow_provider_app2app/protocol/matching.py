"""Declarative, serialisable message filters: which received message a waiter wants.

A filter is plain data (JSON-native), so it survives a trigger's ``serialize()`` and
runs in the triggerer without importing user code. All given criteria must hold:

* ``key``: the message key, compared exactly (default), as a shell-style glob
  (``order-*``) or as a regular expression (``re.fullmatch``);
* ``sender``: the sending destination's URI, compared exactly;
* ``json_field`` + ``json_value``: the content parsed as JSON has ``json_value`` at the
  dotted path ``json_field`` (``order.id``; list items by index: ``items.0.sku``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal, get_args

from airflow_provider_app2app.protocol.messages import ReceivedMessage

KeyMatch = Literal["exact", "glob", "regex"]

_MISSING = object()


class FilterError(ValueError):
    """A filter's definition is unusable (bad regex, unknown option)."""


@dataclass(frozen=True)
class MessageFilter:
    """What a received message must look like to be claimed.

    :param key: the wanted key; ``None`` accepts any key (and key-less messages).
    :param key_match: how ``key`` is compared: ``exact``, ``glob`` or ``regex``.
    :param sender: the URI of the sending destination; ``None`` accepts any sender.
    :param json_field: a dotted path into the JSON content; ``None`` skips the check.
    :param json_value: the value expected at ``json_field`` (any JSON value).
    """

    key: str | None = None
    key_match: KeyMatch = "exact"
    sender: str | None = None
    json_field: str | None = None
    json_value: Any = field(default=None)

    def __post_init__(self) -> None:
        if self.key_match not in get_args(KeyMatch):
            raise FilterError(
                f"key_match={self.key_match!r} is not supported; use one of "
                f"{', '.join(get_args(KeyMatch))}."
            )
        if self.key is not None and not isinstance(self.key, str):
            raise FilterError(f"The key filter must be a string, got {type(self.key).__name__}.")
        if self.key_match == "regex" and self.key is not None:
            try:
                re.compile(self.key)
            except re.error as exc:
                raise FilterError(f"The key regex {self.key!r} does not compile: {exc}.") from None
        if self.json_field is not None and (
            not isinstance(self.json_field, str) or not self.json_field.strip(".")
        ):
            raise FilterError(
                f"json_field must be a dotted path such as 'order.id'; got {self.json_field!r}."
            )
        try:
            json.dumps(self.json_value)
        except (TypeError, ValueError):
            raise FilterError(
                f"json_value must be JSON (str, number, bool, null, list, object); "
                f"got {type(self.json_value).__name__}."
            ) from None

    @cached_property
    def _key_pattern(self) -> re.Pattern[str] | None:
        if self.key is None or self.key_match == "exact":
            return None
        text = fnmatch.translate(self.key) if self.key_match == "glob" else self.key
        return re.compile(text)

    def matches(self, message: ReceivedMessage) -> bool:
        """Whether ``message`` satisfies every criterion of this filter."""
        return (
            self._key_matches(message.key)
            and (self.sender is None or message.sender == self.sender)
            and self._json_matches(message)
        )

    def _key_matches(self, key: str | None) -> bool:
        if self.key is None:
            return True
        if key is None:
            return False
        pattern = self._key_pattern
        return key == self.key if pattern is None else pattern.fullmatch(key) is not None

    def _json_matches(self, message: ReceivedMessage) -> bool:
        if self.json_field is None:
            return True
        try:
            document = json.loads(message.content)
        except (ValueError, UnicodeDecodeError):
            return False
        value = _lookup(document, self.json_field)
        return value is not _MISSING and value == self.json_value

    def describe(self) -> str:
        """A short human description for logs, e.g. ``key='k1', sender=kld://…``."""
        parts = []
        if self.key is not None:
            parts.append(f"key {self.key_match} {self.key!r}")
        if self.sender is not None:
            parts.append(f"sender {self.sender}")
        if self.json_field is not None:
            parts.append(f"{self.json_field} == {json.dumps(self.json_value)}")
        return ", ".join(parts) or "any message"

    def to_dict(self) -> dict[str, Any]:
        """JSON-native form, for a trigger's ``serialize()``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MessageFilter:
        """Rebuild from :meth:`to_dict`'s output; unknown names raise :class:`FilterError`."""
        data = dict(data or {})
        unknown = sorted(set(data) - {f for f in cls.__dataclass_fields__})
        if unknown:
            raise FilterError(
                f"Unknown filter option(s) {', '.join(unknown)}; use key, key_match, "
                f"sender, json_field, json_value."
            )
        return cls(**data)


def _lookup(document: Any, dotted: str) -> Any:
    current = document
    for part in (p for p in dotted.split(".") if p):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif isinstance(current, list) and part.lstrip("-").isdigit():
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current
