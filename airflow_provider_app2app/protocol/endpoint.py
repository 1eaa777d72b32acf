"""Endpoint parsing: from the URL the console shows to what a Socket.IO client needs.

The console shows an endpoint such as ``wss://host/api/v1``. In Socket.IO terms the
HTTP path is the default ``/socket.io`` and ``/api/v1`` is the *namespace*, so a
client connects to ``https://host`` with ``namespaces=["/api/v1"]``. The four
tuning parameters travel in the handshake query string.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from airflow_provider_app2app.protocol.errors import EndpointError

DEFAULT_NAMESPACE = "/api/v1"
DEFAULT_SOCKETIO_PATH = "socket.io"

_SCHEMES = {"wss": "https", "ws": "http", "https": "https", "http": "http"}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise EndpointError(f"Tuning parameter {name}={value!r} is not a boolean; use true or false.")


def _parse_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        number = None
    if number is None or number < 1:
        raise EndpointError(
            f"Tuning parameter {name}={value!r} is not a positive whole number; "
            f"use an integer of 1 or more."
        )
    return number


@dataclass(frozen=True)
class TuningParameters:
    """The four handshake parameters of PROTOCOL.md §1.

    :param auto_commit: ``False`` makes the consumer emit one ``commit`` per message.
    :param read_ahead: with ``auto_commit=False``, how many delivered but uncommitted
        messages may be outstanding.
    :param batch_size: how many produced messages the service may seal into one batch.
    :param batch_timeout: milliseconds the service waits for more messages before
        sealing a batch.
    """

    auto_commit: bool = True
    read_ahead: int = 1
    batch_size: int = 1
    batch_timeout: int = 250

    def __post_init__(self) -> None:
        # Validate even when constructed directly from Python.
        _parse_bool("auto_commit", self.auto_commit)
        for name in ("read_ahead", "batch_size", "batch_timeout"):
            _parse_positive_int(name, getattr(self, name))

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The parameter names, in the order of the protocol table."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_mapping(cls, values: Mapping[str, object]) -> TuningParameters:
        """Build from strings or native values; unknown names are not looked at."""
        parsed: dict[str, Any] = {}
        if "auto_commit" in values:
            parsed["auto_commit"] = _parse_bool("auto_commit", values["auto_commit"])
        for name in ("read_ahead", "batch_size", "batch_timeout"):
            if name in values:
                parsed[name] = _parse_positive_int(name, values[name])
        return cls(**parsed)

    def merged(self, overrides: Mapping[str, object]) -> TuningParameters:
        """A copy with ``overrides`` (strings or native values) applied."""
        update = TuningParameters.from_mapping(overrides)
        changed = {name: getattr(update, name) for name in self.names() if name in overrides}
        return replace(self, **changed)

    def to_query(self) -> dict[str, str]:
        """The handshake query parameters, as strings."""
        return {
            "auto_commit": "true" if self.auto_commit else "false",
            "read_ahead": str(self.read_ahead),
            "batch_size": str(self.batch_size),
            "batch_timeout": str(self.batch_timeout),
        }


@dataclass(frozen=True)
class Endpoint:
    """Where and how a Socket.IO client connects.

    :param base_url: ``https://host[:port]`` or ``http://host[:port]``.
    :param namespace: the Socket.IO namespace, ``/api/v1`` for the service.
    :param socketio_path: the Engine.IO HTTP path, ``socket.io`` by default.
    :param query: every handshake query parameter, tuning parameters included.
    :param tuning: the validated tuning parameters.
    """

    base_url: str
    namespace: str = DEFAULT_NAMESPACE
    socketio_path: str = DEFAULT_SOCKETIO_PATH
    query: Mapping[str, str] = field(default_factory=dict)
    tuning: TuningParameters = field(default_factory=TuningParameters)

    @property
    def connect_url(self) -> str:
        """The URL to hand to a Socket.IO client: base URL plus the query string."""
        return f"{self.base_url}?{urlencode(dict(self.query))}" if self.query else self.base_url

    @property
    def console_url(self) -> str:
        """The endpoint as the console shows it (``wss://host/api/v1``), without query."""
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{self.namespace}"

    @property
    def is_tls(self) -> bool:
        """Whether the connection is encrypted (``wss``/``https``)."""
        return self.base_url.startswith("https://")

    def with_tuning(self, overrides: Mapping[str, object]) -> Endpoint:
        """A copy whose tuning parameters (and query) have ``overrides`` applied."""
        tuning = self.tuning.merged(overrides)
        return replace(self, tuning=tuning, query={**self.query, **tuning.to_query()})


def parse_endpoint(url: str, tuning: Mapping[str, object] | None = None) -> Endpoint:
    """Parse an endpoint as the console shows it.

    :param url: ``wss://host[:port]/api/v1?query`` (``ws``, ``https`` and ``http`` are
        accepted too). A URL without a path uses the ``/api/v1`` namespace.
    :param tuning: tuning parameters that override those in the URL's query.
    :raises EndpointError: for a URL that is not a usable endpoint, or a bad parameter.
    """
    if not isinstance(url, str) or not url.strip():
        raise EndpointError(
            "The App2App endpoint is empty; copy the WebSocket endpoint from the "
            "console, e.g. wss://<host>/api/v1."
        )
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise EndpointError(f"The App2App endpoint {text!r} is not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise EndpointError(
            f"The App2App endpoint {text!r} must start with wss:// (or ws://, https://, "
            f"http://); copy it from the console, e.g. wss://<host>/api/v1."
        )
    if not parts.hostname:
        raise EndpointError(f"The App2App endpoint {text!r} has no host name.")
    if parts.username or parts.password:
        raise EndpointError(
            "The App2App endpoint must not contain credentials; put the app credential "
            "in the connection's login and password instead."
        )
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    namespace = parts.path.rstrip("/") or DEFAULT_NAMESPACE
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    from_url = {k: v for k, v in query.items() if k in TuningParameters.names()}
    params = TuningParameters.from_mapping(from_url).merged(dict(tuning or {}))
    query.update(params.to_query())
    return Endpoint(
        base_url=f"{_SCHEMES[scheme]}://{netloc}",
        namespace=namespace,
        query=query,
        tuning=params,
    )


def basic_auth_header(username: str, password: str) -> str:
    """The ``Authorization`` header value for an app credential."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def parse_basic_auth(header: str | None) -> tuple[str, str] | None:
    """Read ``Basic <b64>`` or a bare ``<b64>`` (the doc page's form).

    :returns: ``(username, password)``, or ``None`` when the header is missing or
        cannot be decoded.
    """
    if not header:
        return None
    value = header.strip()
    if value[:6].lower() == "basic ":
        value = value[6:].strip()
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return username, password
