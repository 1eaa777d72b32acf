"""Client settings and the reconnect backoff policy (no I/O).

Everything a client needs is validated here, before any connection is tried, so a
mistake in a connection form surfaces as one :class:`ClientConfigurationError`
naming the setting, not as a confusing network error later.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

from cryptography import x509

from airflow_provider_app2app.client.errors import ClientConfigurationError
from airflow_provider_app2app.protocol.crypto import Identity, load_certificate
from airflow_provider_app2app.protocol.endpoint import Endpoint, TuningParameters, parse_endpoint
from airflow_provider_app2app.protocol.errors import EndpointError, PemError
from airflow_provider_app2app.protocol.messages import PayloadDialect

__all__ = [
    "BackoffPolicy",
    "ClientSettings",
    "Generation",
    "SocketIOVersion",
]

SocketIOVersion = Literal["auto", "modern", "legacy"]
"""``auto`` negotiates; ``modern`` is Engine.IO 4 (python-socketio 5); ``legacy`` is
Engine.IO 3 (``socketio_v4``)."""

Generation = Literal["modern", "legacy"]
"""A concrete protocol generation, as negotiated or pinned."""

_VERSIONS: tuple[str, ...] = get_args(SocketIOVersion)
_DIALECTS: tuple[str, ...] = get_args(PayloadDialect)
_TRANSPORTS = ("websocket", "polling")


@dataclass(frozen=True)
class BackoffPolicy:
    """Capped exponential backoff with jitter, for reconnecting.

    The n-th delay (n from 0) is ``min(maximum, initial * multiplier**n)`` reduced by
    a random fraction of at most ``jitter``, so that many clients restarted together
    do not reconnect in lock step, and no delay exceeds ``maximum``.

    :param initial: the first delay in seconds.
    :param maximum: the cap in seconds.
    :param multiplier: the growth factor per attempt.
    :param jitter: the largest fraction (0 to 1) taken off a delay at random.
    :param max_attempts: give up after this many failed attempts; ``None`` retries
        for ever.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        if not (self.initial > 0 and math.isfinite(self.initial)):
            raise ClientConfigurationError(
                f"Backoff initial={self.initial!r} must be a positive number of seconds."
            )
        if not (self.maximum >= self.initial and math.isfinite(self.maximum)):
            raise ClientConfigurationError(
                f"Backoff maximum={self.maximum!r} must be at least initial={self.initial!r}."
            )
        if not self.multiplier >= 1:
            raise ClientConfigurationError(
                f"Backoff multiplier={self.multiplier!r} must be 1 or more."
            )
        if not 0 <= self.jitter <= 1:
            raise ClientConfigurationError(
                f"Backoff jitter={self.jitter!r} must be between 0 and 1."
            )
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ClientConfigurationError(
                f"Backoff max_attempts={self.max_attempts!r} must be 1 or more, or None "
                f"to retry for ever."
            )

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """The delay before attempt number ``attempt`` (0-based), in seconds."""
        exponent = min(attempt, 64)  # avoid float overflow; the cap applies long before
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        return base * (1.0 - self.jitter * rng())

    def delays(self, rng: Callable[[], float] = random.random) -> Iterator[float]:
        """The successive delays, ending after ``max_attempts`` when it is set."""
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts:
            yield self.delay(attempt, rng)
            attempt += 1


def _identity(value: object, where: str) -> Identity:
    if isinstance(value, Identity):
        return value
    if isinstance(value, tuple | list) and len(value) == 2:
        try:
            return Identity.from_pem(value[0], value[1])
        except PemError as exc:
            raise ClientConfigurationError(f"{where}: {exc}") from None
    raise ClientConfigurationError(
        f"{where} must be an Identity or a (private key PEM, certificate PEM) pair, "
        f"not {type(value).__name__}."
    )


def _certificate(value: object, where: str) -> x509.Certificate:
    if isinstance(value, x509.Certificate):
        return value
    if isinstance(value, str | bytes):
        try:
            return load_certificate(value)
        except PemError as exc:
            raise ClientConfigurationError(f"{where}: {exc}") from None
    raise ClientConfigurationError(
        f"{where} must be a certificate PEM or an x509.Certificate, not {type(value).__name__}."
    )


@dataclass(frozen=True)
class ClientSettings:
    """How to reach the service, who to be, and how to treat messages.

    :param endpoint: the endpoint as the console shows it (``wss://host/api/v1``), or a
        parsed :class:`~airflow_provider_app2app.protocol.endpoint.Endpoint`.
    :param username: the app credential's username.
    :param password: the app credential's password (never logged, never in ``repr``).
    :param tuning: tuning parameters (``auto_commit``, ``read_ahead``, ``batch_size``,
        ``batch_timeout``) overriding those in the endpoint's query string.
    :param verify_tls: verify the server's TLS certificate (on by default).
    :param ca_bundle: path of a PEM CA bundle to trust instead of the system store.
    :param connect_timeout: seconds one connection attempt may take.
    :param operation_timeout: default seconds to wait for the service's answer to
        ``produce`` and ``subscribe``.
    :param socketio_version: ``auto`` (modern first, legacy on a protocol mismatch,
        remembered per endpoint in the process), ``modern`` or ``legacy``.
    :param payload_dialect: the shape of produced messages, ``proven`` (nested
        ``headers``, the vendor's client) or ``documented`` (flat).
    :param default_sender: the destination ``produce`` sends from when no ``sender``
        is given.
    :param identities: private key and certificate per externally-managed destination
        URI: used to sign messages sent from it and to open envelopes delivered to it.
    :param identity: one identity for every externally-managed destination not in
        ``identities``. It signs *every* message from a sender without an entry in
        ``identities``; use the map when the app also sends from managed destinations.
    :param peer_certificates: certificate per sender URI, to verify the signatures of
        delivered messages (the app's own identities are added automatically).
    :param allow_invalid_signatures: return messages whose signature does not verify
        (``signature_status == "invalid"``) instead of raising.
    :param reconnect: reconnect after the connection drops.
    :param backoff: the reconnect delays.
    :param transports: Engine.IO transports, in order: ``("websocket",)`` (default) or
        ``("polling", "websocket")`` for a long-polling start with upgrade.
    """

    endpoint: str | Endpoint
    username: str
    password: str = field(repr=False)
    tuning: TuningParameters | Mapping[str, object] | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    connect_timeout: float = 10.0
    operation_timeout: float = 30.0
    socketio_version: SocketIOVersion = "auto"
    payload_dialect: PayloadDialect = "proven"
    default_sender: str | None = None
    identities: Mapping[str, Identity] = field(default_factory=dict)
    identity: Identity | None = None
    peer_certificates: Mapping[str, x509.Certificate] = field(default_factory=dict)
    allow_invalid_signatures: bool = False
    reconnect: bool = True
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    transports: tuple[str, ...] = ("websocket",)
    parsed_endpoint: Endpoint = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "parsed_endpoint", self._parse_endpoint())
        if not isinstance(self.username, str) or not self.username:
            raise ClientConfigurationError(
                "The App2App username is empty; set the app credential's username "
                "(the login of the connection)."
            )
        if not isinstance(self.password, str) or not self.password:
            raise ClientConfigurationError(
                f"The App2App password for user {self.username!r} is empty; set the app "
                f"credential's password."
            )
        for name in ("connect_timeout", "operation_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ClientConfigurationError(
                    f"{name}={value!r} must be a positive number of seconds."
                )
        if self.socketio_version not in _VERSIONS:
            raise ClientConfigurationError(
                f"socketio_version={self.socketio_version!r} is not one of "
                f"{', '.join(_VERSIONS)}; use 'auto' unless the server needs pinning."
            )
        if self.payload_dialect not in _DIALECTS:
            raise ClientConfigurationError(
                f"payload_dialect={self.payload_dialect!r} is not one of {', '.join(_DIALECTS)}."
            )
        transports = tuple(self.transports)
        if not transports or any(t not in _TRANSPORTS for t in transports):
            raise ClientConfigurationError(
                f"transports={self.transports!r} must name 'websocket' and/or 'polling'."
            )
        set_(self, "transports", transports)
        if self.ca_bundle is not None and not isinstance(self.ca_bundle, str):
            raise ClientConfigurationError("ca_bundle must be the path of a PEM CA bundle.")
        set_(
            self,
            "identities",
            {
                str(uri): _identity(value, f"The identity of {uri}")
                for uri, value in dict(self.identities).items()
            },
        )
        if self.identity is not None:
            set_(self, "identity", _identity(self.identity, "The default identity"))
        set_(
            self,
            "peer_certificates",
            {
                str(uri): _certificate(value, f"The certificate of sender {uri}")
                for uri, value in dict(self.peer_certificates).items()
            },
        )

    def _parse_endpoint(self) -> Endpoint:
        overrides: Mapping[str, object]
        if self.tuning is None:
            overrides = {}
        elif isinstance(self.tuning, TuningParameters):
            overrides = {name: getattr(self.tuning, name) for name in TuningParameters.names()}
        elif isinstance(self.tuning, Mapping):
            unknown = set(self.tuning) - set(TuningParameters.names())
            if unknown:
                raise ClientConfigurationError(
                    f"Unknown tuning parameter(s) {', '.join(sorted(map(str, unknown)))}; "
                    f"use {', '.join(TuningParameters.names())}."
                )
            overrides = self.tuning
        else:
            raise ClientConfigurationError(
                f"tuning must be TuningParameters or a mapping, not {type(self.tuning).__name__}."
            )
        try:
            if isinstance(self.endpoint, Endpoint):
                return self.endpoint.with_tuning(overrides) if overrides else self.endpoint
            return parse_endpoint(self.endpoint, overrides)
        except EndpointError as exc:
            raise ClientConfigurationError(str(exc)) from None

    @property
    def tuning_parameters(self) -> TuningParameters:
        """The effective tuning parameters (endpoint query merged with ``tuning``)."""
        return self.parsed_endpoint.tuning

    def identity_for(self, destination: str) -> Identity | None:
        """The identity that signs for, and opens envelopes of, ``destination``."""
        return self.identities.get(destination, self.identity)

    def certificate_for(self, sender: str) -> x509.Certificate | None:
        """The certificate that verifies ``sender``'s signatures, if one is known."""
        certificate = self.peer_certificates.get(sender)
        if certificate is None and sender in self.identities:
            certificate = self.identities[sender].certificate
        return certificate
