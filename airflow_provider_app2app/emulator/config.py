"""The emulated environment: memberships, app credentials and destinations.

An environment comes from a TOML file (``--config``) or, without one, is the
*demo environment*: built on the first start and kept in the data directory as
``environment.toml`` (same format, so it doubles as a template), with the RSA keys and
self-signed certificates of its externally-managed destinations under ``keys/``.

The TOML format::

    [environment]
    id = "local"            # the <env> segment of generated URIs (default "local")
    service = "app2app"     # the <service> segment (default "app2app")

    [[memberships]]
    id = "org1"             # the <member> segment; letters, digits, "-", "_", "."

    [[memberships.credentials]]
    username = "org1-app"
    password = "a-secret"

    [[memberships.destinations]]
    name = "org1-managed"   # [a-z0-9-_.], at most 44 characters
    kaleido_managed = true  # the default

    [[memberships.destinations]]
    name = "org1-external"
    kaleido_managed = false
    certificate = "keys/org1-external.cert.pem"  # required for external destinations
    private_key = "keys/org1-external.key.pem"   # optional; only reported to the user
    # uri = "kld://..."     # optional; default kld://app2app/m/<member>/e/<env>/s/<service>/d/<name>

Relative paths are relative to the TOML file's directory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from airflow_provider_app2app.protocol.crypto import generate_identity, load_certificate
from airflow_provider_app2app.protocol.errors import App2AppError, PemError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

DEMO_CONFIG_NAME = "environment.toml"
"""File name of the demo environment kept in the data directory."""

DEMO_MEMBERSHIPS = ("org1", "org2")
DEFAULT_ENVIRONMENT_ID = "local"
DEFAULT_SERVICE_ID = "app2app"

_DESTINATION_NAME = re.compile(r"^[a-z0-9_.-]{1,44}$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class EmulatorConfigError(App2AppError, ValueError):
    """The environment configuration cannot be used; the message names the fix."""


def destination_uri(membership: str, environment: str, service: str, name: str) -> str:
    """The URI of a destination, ``kld://app2app/m/<member>/e/<env>/s/<service>/d/<name>``."""
    return f"kld://app2app/m/{membership}/e/{environment}/s/{service}/d/{name}"


@dataclass(frozen=True)
class Membership:
    """An organisation taking part in the environment.

    :param id: the membership ID, also the ``<member>`` segment of its destination URIs.
    """

    id: str


@dataclass(frozen=True)
class Credential:
    """An app credential of one membership (HTTP Basic auth on the socket and REST).

    :param username: the credential ID.
    :param password: the secret (never shown in logs or reprs).
    :param membership: ID of the membership the credential acts for.
    """

    username: str
    password: str = field(repr=False)
    membership: str


@dataclass(frozen=True)
class Destination:
    """A destination (an address that can send and receive messages).

    :param name: the short name, ``[a-z0-9-_.]``, at most 44 characters.
    :param uri: the full ``kld://`` URI clients use.
    :param membership: ID of the owning membership.
    :param kaleido_managed: ``True`` when the service holds the keys; ``False`` for an
        externally-managed destination, which signs what it sends and receives PKCS#7
        envelopes.
    :param certificate_path: where the certificate of an external destination is.
    :param private_key_path: where its private key is, when known (reported only).
    :param certificate: the loaded certificate of an external destination.
    """

    name: str
    uri: str
    membership: str
    kaleido_managed: bool = True
    certificate_path: Path | None = None
    private_key_path: Path | None = None
    certificate: x509.Certificate | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class EnvironmentConfig:
    """Everything the emulator serves: memberships, credentials and destinations.

    :param memberships: the memberships, in configuration order.
    :param credentials: every app credential.
    :param destinations: every destination, in configuration order.
    :param source: the TOML file the environment was read from.
    :param demo: whether this is the generated demo environment.
    """

    memberships: tuple[Membership, ...]
    credentials: tuple[Credential, ...]
    destinations: tuple[Destination, ...]
    source: Path | None = None
    demo: bool = False
    _by_uri: dict[str, Destination] = field(init=False, repr=False, compare=False)
    _by_username: dict[str, Credential] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_uri", {d.uri: d for d in self.destinations})
        object.__setattr__(self, "_by_username", {c.username: c for c in self.credentials})

    def destination(self, uri: str) -> Destination | None:
        """The destination with this URI, or ``None``."""
        return self._by_uri.get(uri)

    def credential(self, username: str) -> Credential | None:
        """The credential with this username, or ``None``."""
        return self._by_username.get(username)

    def destinations_of(self, membership: str) -> tuple[Destination, ...]:
        """The destinations a membership owns, in configuration order."""
        return tuple(d for d in self.destinations if d.membership == membership)

    def credentials_of(self, membership: str) -> tuple[Credential, ...]:
        """The credentials of a membership, in configuration order."""
        return tuple(c for c in self.credentials if c.membership == membership)


# ---------------------------------------------------------------------------- loading


def _text(table: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = table.get(name, default)
    if not isinstance(value, str) or not value:
        raise EmulatorConfigError(f"{where}: '{name}' must be a non-empty string.")
    return value


def _tables(table: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    value = table.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise EmulatorConfigError(f"{where}: '{name}' must be an array of tables ([[{name}]]).")
    return value


def _load_certificate(path: Path, where: str) -> x509.Certificate:
    try:
        return load_certificate(path.read_bytes())
    except OSError as exc:
        raise EmulatorConfigError(
            f"{where}: cannot read certificate {path} ({exc.strerror}); fix the path."
        ) from None
    except PemError as exc:
        raise EmulatorConfigError(f"{where}: certificate {path} is not usable: {exc}") from None


def _destination(
    table: Mapping[str, Any], membership: str, env: str, service: str, base: Path, where: str
) -> Destination:
    name = _text(table, "name", where)
    if not _DESTINATION_NAME.match(name):
        raise EmulatorConfigError(
            f"{where}: destination name {name!r} must be 1-44 characters of [a-z0-9-_.]."
        )
    where = f"{where} ({name})"
    uri = _text(table, "uri", where, destination_uri(membership, env, service, name))
    managed = table.get("kaleido_managed", True)
    if not isinstance(managed, bool):
        raise EmulatorConfigError(f"{where}: 'kaleido_managed' must be true or false.")
    if managed:
        return Destination(name=name, uri=uri, membership=membership)
    if "certificate" not in table:
        raise EmulatorConfigError(
            f"{where}: an externally-managed destination needs 'certificate', the path "
            f"of its PEM certificate (the emulator encrypts deliveries and checks "
            f"signatures with it)."
        )
    cert_path = (base / _text(table, "certificate", where)).resolve()
    key_path = None
    if "private_key" in table:
        key_path = (base / _text(table, "private_key", where)).resolve()
    return Destination(
        name=name,
        uri=uri,
        membership=membership,
        kaleido_managed=False,
        certificate_path=cert_path,
        private_key_path=key_path,
        certificate=_load_certificate(cert_path, where),
    )


def parse_config(
    document: Mapping[str, Any], base: Path, source: Path | None = None
) -> EnvironmentConfig:
    """Build an environment from a parsed TOML document.

    :param document: the parsed TOML.
    :param base: the directory relative paths are resolved against.
    :param source: the file the document came from, for messages.
    :raises EmulatorConfigError: for anything missing, malformed or duplicated.
    """
    label = str(source) if source else "config"
    env_table = document.get("environment", {})
    if not isinstance(env_table, Mapping):
        raise EmulatorConfigError(f"{label}: [environment] must be a table.")
    env = _text(env_table, "id", f"{label} [environment]", DEFAULT_ENVIRONMENT_ID)
    service = _text(env_table, "service", f"{label} [environment]", DEFAULT_SERVICE_ID)
    memberships: list[Membership] = []
    credentials: list[Credential] = []
    destinations: list[Destination] = []
    for index, table in enumerate(_tables(document, "memberships", label)):
        member = _text(table, "id", f"{label} memberships[{index}]")
        if not _SEGMENT.match(member):
            raise EmulatorConfigError(
                f"{label}: membership id {member!r} must be letters, digits, '-', '_' or '.'."
            )
        where = f"{label} membership {member}"
        memberships.append(Membership(member))
        for cred in _tables(table, "credentials", where):
            username = _text(cred, "username", f"{where} credential")
            if ":" in username:
                raise EmulatorConfigError(f"{where}: username {username!r} must not contain ':'.")
            password = _text(cred, "password", f"{where} credential {username}")
            credentials.append(Credential(username, password, member))
        for dest in _tables(table, "destinations", where):
            destinations.append(_destination(dest, member, env, service, base, where))
    _check_unique(label, memberships, credentials, destinations)
    return EnvironmentConfig(tuple(memberships), tuple(credentials), tuple(destinations), source)


def _check_unique(
    label: str,
    memberships: list[Membership],
    credentials: list[Credential],
    destinations: list[Destination],
) -> None:
    if not memberships:
        raise EmulatorConfigError(f"{label}: define at least one [[memberships]].")
    for what, values in (
        ("membership id", [m.id for m in memberships]),
        ("credential username", [c.username for c in credentials]),
        ("destination URI", [d.uri for d in destinations]),
    ):
        seen: set[str] = set()
        for value in values:
            if value in seen:
                raise EmulatorConfigError(f"{label}: {what} {value!r} is defined twice.")
            seen.add(value)
    if not credentials:
        raise EmulatorConfigError(f"{label}: define at least one app credential.")


def load_config(path: Path) -> EnvironmentConfig:
    """Read an environment from a TOML file.

    :raises EmulatorConfigError: when the file is missing, not TOML, or not valid.
    """
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise EmulatorConfigError(f"Cannot read config file {path} ({exc.strerror}).") from None
    except tomllib.TOMLDecodeError as exc:
        raise EmulatorConfigError(f"Config file {path} is not valid TOML: {exc}.") from None
    return parse_config(document, path.resolve().parent, path)


# ------------------------------------------------------------------------------- demo


def _toml_string(value: str) -> str:
    # A JSON string literal is a valid TOML basic string.
    return json.dumps(value)


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(text)


def write_demo_config(data_dir: Path) -> Path:
    """Generate the demo environment in ``data_dir`` and return its TOML file.

    Memberships ``org1`` and ``org2``, one app credential each with a generated
    password, and per membership ``<org>-managed`` (Kaleido-managed) and
    ``<org>-external`` (RSA-2048 key and self-signed certificate under ``keys/``).
    """
    keys = data_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    lines = [
        "# App2App emulator demo environment, generated on first start.",
        "# Edit it, or copy it as a starting point for --config.",
        "",
        "[environment]",
        f"id = {_toml_string(DEFAULT_ENVIRONMENT_ID)}",
        f"service = {_toml_string(DEFAULT_SERVICE_ID)}",
    ]
    for member in DEMO_MEMBERSHIPS:
        external = f"{member}-external"
        key_pem, cert_pem = generate_identity(
            destination_uri(member, DEFAULT_ENVIRONMENT_ID, DEFAULT_SERVICE_ID, external)
        )
        _write_private(keys / f"{external}.key.pem", key_pem)
        (keys / f"{external}.cert.pem").write_text(cert_pem, encoding="ascii")
        lines += [
            "",
            "[[memberships]]",
            f"id = {_toml_string(member)}",
            "",
            "[[memberships.credentials]]",
            f"username = {_toml_string(f'{member}-app')}",
            f"password = {_toml_string(secrets.token_urlsafe(18))}",
            "",
            "[[memberships.destinations]]",
            f"name = {_toml_string(f'{member}-managed')}",
            "kaleido_managed = true",
            "",
            "[[memberships.destinations]]",
            f"name = {_toml_string(external)}",
            "kaleido_managed = false",
            f"certificate = {_toml_string(f'keys/{external}.cert.pem')}",
            f"private_key = {_toml_string(f'keys/{external}.key.pem')}",
        ]
    path = data_dir / DEMO_CONFIG_NAME
    partial = path.with_suffix(".toml.partial")
    _write_private(partial, "\n".join(lines) + "\n")
    partial.replace(path)
    return path


def load_environment(data_dir: Path, config_file: Path | None = None) -> EnvironmentConfig:
    """The environment to serve: ``config_file`` if given, else the demo environment.

    The demo environment is generated once and read back from ``data_dir`` on later
    starts, so credentials and keys stay stable.

    :raises EmulatorConfigError: when the configuration is not usable.
    """
    if config_file is not None:
        return load_config(config_file)
    path = data_dir / DEMO_CONFIG_NAME
    if not path.exists():
        write_demo_config(data_dir)
    config = load_config(path)
    return EnvironmentConfig(
        config.memberships, config.credentials, config.destinations, path, demo=True
    )
