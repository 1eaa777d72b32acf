"""Typed exceptions of the App2App clients.

Each one says what happened, with which object, and what to do about it. None of
them ever contains a password, a private key or an ``Authorization`` header;
usernames, endpoints and destination URIs are fine.

All of them subclass :class:`~airflow_provider_app2app.protocol.errors.App2AppError`,
so ``except App2AppError`` catches everything this package raises. The
connection-level ones are also :class:`ConnectionError`, the timeouts also
:class:`TimeoutError`, and configuration mistakes also :class:`ValueError`, so
generic handlers keep working.
"""

from __future__ import annotations

from airflow_provider_app2app.protocol.errors import App2AppError, SignatureError

__all__ = [
    "App2AppConnectionError",
    "App2AppTimeoutError",
    "AuthenticationError",
    "ClientClosedError",
    "ClientConfigurationError",
    "ConnectionLostError",
    "DecryptionError",
    "DeliveryUnconfirmedError",
    "EndpointUnreachableError",
    "InvalidSignatureError",
    "ProtocolMismatchError",
    "ServiceError",
    "TlsError",
]


class ClientConfigurationError(App2AppError, ValueError):
    """A client setting is missing or unusable (caught before any connection)."""


class App2AppConnectionError(App2AppError, ConnectionError):
    """The connection to the service could not be made or was lost."""


class AuthenticationError(App2AppConnectionError):
    """The service refused the app credential.

    :param username: the username that was refused (never the password).
    :param reason: the service's reason, when it gave one.
    """

    def __init__(self, message: str, *, username: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.username = username
        self.reason = reason


class EndpointUnreachableError(App2AppConnectionError):
    """The endpoint's host cannot be resolved or does not accept connections."""


class TlsError(App2AppConnectionError):
    """The TLS handshake failed (certificate not trusted, or not a TLS port)."""


class ProtocolMismatchError(App2AppConnectionError):
    """The server does not speak the Socket.IO generation that was asked for."""


class ConnectionLostError(App2AppConnectionError):
    """The connection dropped while an operation waited for the service's answer."""


class ClientClosedError(App2AppError, RuntimeError):
    """The client was used before :meth:`connect` or after :meth:`close`."""


class App2AppTimeoutError(App2AppError, TimeoutError):
    """The service did not answer within the configured time."""


class ServiceError(App2AppError):
    """The service rejected an operation; carries the service's own text.

    :param operation: ``"produce"``, ``"subscribe"`` or ``"commit"``.
    :param service_text: the error text the service sent, unchanged.
    """

    def __init__(self, message: str, *, operation: str, service_text: str) -> None:
        super().__init__(message)
        self.operation = operation
        self.service_text = service_text


class DeliveryUnconfirmedError(App2AppError):
    """A produced message was acknowledged but its delivery report never came.

    :param keys: the keys of the unconfirmed messages (``None`` for key-less ones).
    """

    def __init__(self, message: str, *, keys: list[str | None]) -> None:
        super().__init__(message)
        self.keys = keys


class DecryptionError(App2AppError):
    """A delivered envelope cannot be opened with the configured identities.

    Raised by ``receive()`` at the message's position in the stream. With
    ``auto_commit=false`` the message still holds a commit slot: call ``commit()``
    to skip it, or fix the configuration and reconnect to have it redelivered.

    :param key: the message key, when the service sent one.
    """

    def __init__(self, message: str, *, key: str | None) -> None:
        super().__init__(message)
        self.key = key


class InvalidSignatureError(SignatureError):
    """A delivered message's signature does not match its sender's certificate.

    Raised by ``receive()`` unless ``allow_invalid_signatures`` is set, in which case
    the message is returned with ``signature_status == "invalid"``. With
    ``auto_commit=false`` call ``commit()`` to skip it.

    :param key: the message key, when the service sent one.
    :param sender: the sender destination URI the message claims.
    """

    def __init__(self, message: str, *, key: str | None, sender: str) -> None:
        super().__init__(message)
        self.key = key
        self.sender = sender
