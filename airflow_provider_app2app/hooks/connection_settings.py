"""From an Airflow connection of type ``app2app`` to validated client settings.

Pure code (no Airflow import): the hook hands over the connection's fields, this
module checks every extra with one clear message per mistake, and builds
:class:`~airflow_provider_app2app.client.settings.ClientSettings`.

The endpoint is the connection's ``host``. The connection form and the JSON form
take it as the console shows it (``wss://<host>/api/v1``). The URI form cannot carry
a scheme in the host, so there either URL-encode the whole endpoint into the host
(``app2app://user:pass@wss%3A%2F%2Fhost%2Fapi%2Fv1``) or give the bare host (with
port and ``api/v1`` as path): it then means ``wss://`` — or ``ws://`` for a loopback
host such as the local emulator — unless the extra ``secure`` says otherwise.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_app2app.client.errors import ClientConfigurationError
from airflow_provider_app2app.client.settings import ClientSettings
from airflow_provider_app2app.get_provider_info import CONNECTION_FIELDS
from airflow_provider_app2app.protocol.crypto import Identity, load_certificate
from airflow_provider_app2app.protocol.endpoint import TuningParameters
from airflow_provider_app2app.protocol.errors import PemError

EXTRA_PREFIX = "extra__app2app__"
_URI_ONLY_EXTRAS = {"secure"}
_TUNING = set(TuningParameters.names())
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ConnectionConfigurationError(ClientConfigurationError):
    """The Airflow connection's fields cannot make a working App2App client."""


@dataclass(frozen=True)
class ConnectionFields:
    """The parts of an Airflow connection that matter here.

    :param conn_id: the connection ID, for messages.
    :param host: the endpoint (or a bare host name in the URI form).
    :param login: the app credential's username.
    :param password: the app credential's password.
    :param port: the port, when the host is bare.
    :param schema: the path (``api/v1``), when the host is bare.
    :param extra: the extras, as a mapping or the JSON text Airflow stores.
    """

    conn_id: str
    host: str | None
    login: str | None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    schema: str | None = None
    extra: Mapping[str, Any] | str | None = None


def _extras(fields: ConnectionFields) -> dict[str, Any]:
    raw = fields.extra
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigurationError(
                f"Connection {fields.conn_id!r}: the extras are not valid JSON ({exc}); "
                f"write them as a JSON object."
            ) from None
    if not isinstance(raw, Mapping):
        raise ConnectionConfigurationError(
            f"Connection {fields.conn_id!r}: the extras must be a JSON object."
        )
    extras: dict[str, Any] = {}
    for name, value in raw.items():
        short = name[len(EXTRA_PREFIX) :] if name.startswith(EXTRA_PREFIX) else name
        if value is None or value == "":
            continue
        extras[short] = value
    unknown = sorted(set(extras) - set(CONNECTION_FIELDS) - _URI_ONLY_EXTRAS)
    if unknown:
        raise ConnectionConfigurationError(
            f"Connection {fields.conn_id!r}: unknown extra field(s) {', '.join(unknown)}; "
            f"the app2app connection knows {', '.join(sorted(CONNECTION_FIELDS))}."
        )
    return extras


def _bool(conn_id: str, name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConnectionConfigurationError(
        f"Connection {conn_id!r}: extra {name}={value!r} is not a boolean; use true or false."
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def endpoint_from_fields(fields: ConnectionFields, secure: bool | None = None) -> str:
    """The endpoint URL the connection describes (see the module docstring)."""
    host = (fields.host or "").strip()
    if not host:
        raise ConnectionConfigurationError(
            f"Connection {fields.conn_id!r} has no host; set it to the endpoint the App2App "
            f"console shows, e.g. wss://<host>/api/v1."
        )
    if "://" in host:
        return host
    use_tls = (not _is_loopback(host)) if secure is None else secure
    netloc = f"{host}:{fields.port}" if fields.port else host
    path = (fields.schema or "").strip("/") or "api/v1"
    return f"{'wss' if use_tls else 'ws'}://{netloc}/{path}"


def _peer_certificates(conn_id: str, value: object) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigurationError(
                f"Connection {conn_id!r}: peer_certificates is not valid JSON ({exc}); write "
                f'a JSON object such as {{"kld://…/d/partner-external": "-----BEGIN '
                f'CERTIFICATE-----…"}}.'
            ) from None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ConnectionConfigurationError(
            f"Connection {conn_id!r}: peer_certificates must map each sender destination URI "
            f"to its certificate PEM text."
        )
    certificates = {}
    for uri, pem in value.items():
        try:
            certificates[uri] = load_certificate(pem)
        except PemError as exc:
            raise ConnectionConfigurationError(
                f"Connection {conn_id!r}: the peer certificate of {uri} cannot be read: {exc}"
            ) from None
    return certificates


def _identity(conn_id: str, extras: Mapping[str, Any]) -> Identity | None:
    key, certificate = extras.get("private_key"), extras.get("certificate")
    if key is None and certificate is None:
        return None
    if key is None or certificate is None:
        missing = "private_key" if key is None else "certificate"
        raise ConnectionConfigurationError(
            f"Connection {conn_id!r}: the destination key and certificate go together; "
            f"set {missing} as well."
        )
    try:
        return Identity.from_pem(str(key), str(certificate))
    except PemError as exc:
        raise ConnectionConfigurationError(f"Connection {conn_id!r}: {exc}") from None


def settings_from_fields(fields: ConnectionFields, **overrides: Any) -> ClientSettings:
    """Build client settings from a connection's fields.

    :param fields: the connection.
    :param overrides: :class:`ClientSettings` fields that win over the connection's
        (e.g. ``tuning`` for a trigger that commits explicitly).
    :raises ConnectionConfigurationError: naming the field and the fix.
    """
    conn_id = fields.conn_id
    extras = _extras(fields)
    secure = _bool(conn_id, "secure", extras["secure"]) if "secure" in extras else None
    if not fields.login:
        raise ConnectionConfigurationError(
            f"Connection {conn_id!r} has no login; set it to the app credential's username."
        )
    if not fields.password:
        raise ConnectionConfigurationError(
            f"Connection {conn_id!r} has no password; set it to the app credential's "
            f"password for user {fields.login!r}."
        )
    tuning = {name: extras[name] for name in _TUNING if name in extras}
    identity = _identity(conn_id, extras)
    default_destination = extras.get("default_destination")
    identities = {}
    if identity is not None and default_destination:
        identities[str(default_destination)] = identity
    kwargs: dict[str, Any] = {
        "endpoint": endpoint_from_fields(fields, secure),
        "username": fields.login,
        "password": fields.password,
        "tuning": tuning,
        "default_sender": default_destination,
        "identities": identities,
        "identity": identity if not identities else None,
        "peer_certificates": _peer_certificates(conn_id, extras["peer_certificates"])
        if "peer_certificates" in extras
        else {},
    }
    if "verify_tls" in extras:
        kwargs["verify_tls"] = _bool(conn_id, "verify_tls", extras["verify_tls"])
    for name in ("ca_bundle", "socketio_version", "payload_dialect"):
        if name in extras:
            kwargs[name] = extras[name]
    kwargs.update(overrides)
    try:
        return ClientSettings(**kwargs)
    except ConnectionConfigurationError:
        raise
    except ClientConfigurationError as exc:
        raise ConnectionConfigurationError(f"Connection {conn_id!r}: {exc}") from None
