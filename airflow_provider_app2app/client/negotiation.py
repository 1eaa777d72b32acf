"""Which Socket.IO generation to speak, and what a failed connection attempt means.

``socketio_version="auto"`` tries the modern generation (Engine.IO 4, python-socketio
5) first. When the server answers in a way that only a server of the other
generation would (no ``OPEN`` packet, an unreadable handshake, HTTP 400 from the
Engine.IO endpoint: what python-socketio 5 gets from an Engine.IO 3 server, and
``socketio_v4`` from an Engine.IO 4 one), it tries the legacy generation. The
choice is remembered per endpoint for the life of the process and logged once.

:func:`classify_failure` turns whatever the transport libraries raised (their
exception chains keep the original socket, DNS, TLS and HTTP errors) plus the
service's refusal reason into one typed, actionable error. It is pure: the two
clients only collect the evidence.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

from airflow_provider_app2app.client.errors import (
    App2AppConnectionError,
    App2AppTimeoutError,
    AuthenticationError,
    EndpointUnreachableError,
    ProtocolMismatchError,
    TlsError,
)
from airflow_provider_app2app.client.settings import ClientSettings, Generation
from airflow_provider_app2app.protocol.errors import App2AppError

__all__ = [
    "GENERATION_LABELS",
    "attempt_order",
    "classify_failure",
    "forget_generations",
    "remember_generation",
    "remembered_generation",
]

log = logging.getLogger("airflow_provider_app2app.client")

GENERATION_LABELS: dict[str, str] = {
    "modern": "modern (Socket.IO 5 / Engine.IO 4)",
    "legacy": "legacy (Socket.IO 2 / Engine.IO 3)",
}

_memory: dict[str, Generation] = {}
_memory_lock = threading.Lock()

_MISMATCH_TEXTS = (
    "open packet not returned",
    "no open packet",
    "unexpected response from server",
    "unsupported version",
)
_AUTH_WORDS = re.compile(
    r"auth|credential|password|unauthori[sz]ed|forbidden|not allowed|denied|401|403|login",
    re.IGNORECASE,
)
_STATUS = re.compile(r"(?:status(?: code)?|HTTP)[^0-9]{0,3}([1-5][0-9]{2})", re.IGNORECASE)


def _endpoint_key(settings: ClientSettings) -> str:
    endpoint = settings.parsed_endpoint
    return f"{endpoint.base_url}/{endpoint.socketio_path}{endpoint.namespace}"


def remembered_generation(settings: ClientSettings) -> Generation | None:
    """The generation negotiated earlier in this process for the settings' endpoint."""
    with _memory_lock:
        return _memory.get(_endpoint_key(settings))


def remember_generation(settings: ClientSettings, generation: Generation) -> None:
    """Remember a negotiated generation; logs at INFO the first time and on a change."""
    key = _endpoint_key(settings)
    with _memory_lock:
        previous = _memory.get(key)
        _memory[key] = generation
    if previous != generation:
        log.info(
            "App2App endpoint %s speaks the %s protocol; using it for this endpoint "
            "for the rest of the process.",
            settings.parsed_endpoint.console_url,
            GENERATION_LABELS[generation],
        )


def forget_generations() -> None:
    """Forget every remembered generation (for tests)."""
    with _memory_lock:
        _memory.clear()


def attempt_order(settings: ClientSettings) -> list[Generation]:
    """The generations to try, in order, for one connection attempt."""
    if settings.socketio_version == "modern":
        return ["modern"]
    if settings.socketio_version == "legacy":
        return ["legacy"]
    known = remembered_generation(settings)
    if known == "legacy":
        return ["legacy", "modern"]
    return ["modern", "legacy"]


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _short(exc: BaseException) -> str:
    """The first, human part of a transport error (websocket-client appends headers)."""
    text = str(exc).split(" -+-+- ")[0].strip()
    return text if len(text) <= 160 else text[:157] + "..."


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _status(exc: BaseException) -> int | None:
    for attribute in ("status_code", "status"):
        value = getattr(exc, attribute, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    match = _STATUS.search(str(exc))
    return int(match.group(1)) if match else None


def _host_port(settings: ClientSettings) -> str:
    parts = urlsplit(settings.parsed_endpoint.base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _text(value: object) -> str:
    if isinstance(value, dict):
        for name in ("message", "reason", "error"):
            if isinstance(value.get(name), str):
                return str(value[name])
    if isinstance(value, list | tuple) and value:
        return "; ".join(_text(v) for v in value)
    return str(value)


def refusal_error(settings: ClientSettings, reason: object) -> App2AppError:
    """The error for a connection the service refused with ``reason``."""
    text = _text(reason).strip() or "no reason given"
    console = settings.parsed_endpoint.console_url
    if _AUTH_WORDS.search(text):
        return AuthenticationError(
            f"The App2App service at {console} refused the credentials of user "
            f"{settings.username!r} ({text}); check the username and password of the "
            f"app credential (and that it belongs to this environment).",
            username=settings.username,
            reason=text,
        )
    return App2AppConnectionError(
        f"The App2App service at {console} refused the connection of user "
        f"{settings.username!r} to namespace {settings.parsed_endpoint.namespace}: "
        f"{text}. Check the endpoint path (copy it from the console, usually ending in "
        f"/api/v1), the tuning parameters and the app credential."
    )


def classify_failure(
    settings: ClientSettings,
    generation: Generation,
    exc: BaseException | None,
    refusal: object = None,
) -> App2AppError:
    """One typed error for a failed connection attempt.

    :param generation: the generation that was tried.
    :param exc: what the transport raised (``None`` when it reported no exception,
        e.g. a refused legacy client whose ``connect()`` returned).
    :param refusal: the reason the service gave in ``connect_error``, if any.
    """
    console = settings.parsed_endpoint.console_url
    where = _host_port(settings)
    label = GENERATION_LABELS[generation]
    if refusal is not None:
        return refusal_error(settings, refusal)
    chain = list(_chain(exc))
    for error in chain:
        names = _names(error)
        if isinstance(error, ssl.SSLCertVerificationError) or (
            "ClientConnectorCertificateError" in names
        ):
            hint = (
                "pass ca_bundle with the CA that signed it" if settings.verify_tls else "check it"
            )
            return TlsError(
                f"The TLS certificate of {where} is not trusted ({error}); {hint}, or "
                f"(for a local test server only) set verify_tls=False."
            )
        if isinstance(error, ssl.SSLError) or names & {"ClientSSLError", "ClientConnectorSSLError"}:
            return TlsError(
                f"The TLS handshake with {where} failed ({error}); if the server does not "
                f"use TLS, use a ws:// endpoint instead of {console}, otherwise check the "
                f"server's certificate and ca_bundle."
            )
        if isinstance(error, socket.gaierror) or "ClientConnectorDNSError" in names:
            return EndpointUnreachableError(
                f"The host of the App2App endpoint {console} cannot be resolved ({error}); "
                f"check the host name in the endpoint (copy it from the console)."
            )
        if isinstance(error, ConnectionRefusedError) or (
            "ClientConnectorError" in names and "Connect call failed" in str(error)
        ):
            return EndpointUnreachableError(
                f"Nothing accepts connections at {where} for the App2App endpoint "
                f"{console} ({error}); check the host and port, and that the service is "
                f"running."
            )
        if isinstance(error, TimeoutError) or names & {
            "WebSocketTimeoutException",
            "ServerTimeoutError",
            "ConnectTimeoutError",
            "timeout",
        }:
            return App2AppTimeoutError(
                f"Connecting to {console} took longer than connect_timeout="
                f"{settings.connect_timeout:g}s; check that the endpoint is reachable "
                f"from here (proxy, firewall) or raise connect_timeout."
            )
    for error in chain:
        text = str(error).lower()
        if any(marker in text for marker in _MISMATCH_TEXTS):
            return ProtocolMismatchError(
                f"The server at {console} does not speak the {label} protocol "
                f"({_short(error)}); set socketio_version='auto' (or the other generation) in "
                f"the connection settings."
            )
        status = _status(error)
        if status in (401, 403):
            return AuthenticationError(
                f"The App2App service at {console} refused the credentials of user "
                f"{settings.username!r} (HTTP {status}); check the username and password "
                f"of the app credential.",
                username=settings.username,
                reason=f"HTTP {status}",
            )
        if status == 400:
            return ProtocolMismatchError(
                f"The server at {console} rejected the {label} handshake with HTTP 400 "
                f"(it probably speaks the other generation); set socketio_version='auto' "
                f"(or the other generation) in the connection settings."
            )
        if status == 404:
            return EndpointUnreachableError(
                f"The server at {where} has no Socket.IO service at the path of {console} "
                f"(HTTP 404); check the endpoint URL (copy it from the console)."
            )
        if status is not None and status >= 500:
            return App2AppConnectionError(
                f"The App2App service at {console} failed to accept the connection "
                f"(HTTP {status}); retry later, or ask the service operator."
            )
    detail = str(chain[0]) if chain else "no reason given"
    return App2AppConnectionError(
        f"Could not connect to {console} with the {label} protocol ({detail}); check "
        f"the endpoint, network access, and socketio_version."
    )


def pinned_mismatch(
    settings: ClientSettings, generation: Generation, error: App2AppError
) -> App2AppError:
    """The error for a pinned generation that the server does not speak."""
    other = "legacy" if generation == "modern" else "modern"
    return ProtocolMismatchError(
        f"The server at {settings.parsed_endpoint.console_url} does not speak the "
        f"{GENERATION_LABELS[generation]} protocol that socketio_version="
        f"{settings.socketio_version!r} pins ({error}); set socketio_version='auto' or "
        f"'{other}'."
    )


def neither_generation(settings: ClientSettings, errors: list[App2AppError]) -> App2AppError:
    """The error when ``auto`` tried both generations and neither matched."""
    details = "; ".join(str(e) for e in errors)
    return ProtocolMismatchError(
        f"The server at {settings.parsed_endpoint.console_url} speaks neither Socket.IO "
        f"generation ({details}); check that the endpoint is an App2App WebSocket "
        f"endpoint (copy it from the console)."
    )
