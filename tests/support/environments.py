"""Emulator environments for tests: a TOML config with plenty of fresh destinations.

Tests that share one emulator process must not see each other's messages, so
:func:`write_test_config` defines many destinations per membership and
:class:`DestinationPool` hands each test destinations nobody used before.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_app2app.protocol.crypto import generate_identity

MEMBERSHIPS = ("org1", "org2")


def write_test_config(
    directory: Path,
    *,
    memberships: tuple[str, ...] = MEMBERSHIPS,
    managed: int = 150,
    external: int = 6,
    passwords: dict[str, str] | None = None,
) -> Path:
    """Write ``emulator.toml`` (and keys) into ``directory``; return the file's path.

    Per membership ``m``: credential ``m-app`` (password ``m-secret`` unless given),
    managed destinations ``m-m000``..., external ones ``m-x00``... with a key and a
    certificate each under ``keys/``.
    """
    keys = directory / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    lines = ["[environment]", 'id = "test"', 'service = "app2app"']
    for member in memberships:
        password = (passwords or {}).get(member, f"{member}-secret")
        lines += [
            "",
            "[[memberships]]",
            f"id = {json.dumps(member)}",
            "[[memberships.credentials]]",
            f"username = {json.dumps(member + '-app')}",
            f"password = {json.dumps(password)}",
        ]
        for index in range(managed):
            lines += ["[[memberships.destinations]]", f'name = "{member}-m{index:03d}"']
        for index in range(external):
            name = f"{member}-x{index:02d}"
            key_pem, cert_pem = generate_identity(name)
            (keys / f"{name}.key.pem").write_text(key_pem, encoding="ascii")
            (keys / f"{name}.cert.pem").write_text(cert_pem, encoding="ascii")
            lines += [
                "[[memberships.destinations]]",
                f'name = "{name}"',
                "kaleido_managed = false",
                f'certificate = "keys/{name}.cert.pem"',
                f'private_key = "keys/{name}.key.pem"',
            ]
    path = directory / "emulator.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class DestinationPool:
    """Hands out destinations of an environment.json that no other test used.

    :param environment: the emulator's environment.json document.
    """

    environment: dict[str, Any]
    _used: set[str] = field(default_factory=set)
    _counter: itertools.count[int] = field(default_factory=itertools.count)

    def take(self, membership: str, *, managed: bool = True) -> dict[str, Any]:
        """A fresh destination of ``membership`` (its environment.json entry)."""
        for dest in self.environment["destinations"]:
            if (
                dest["membership"] == membership
                and dest["kaleido_managed"] == managed
                and dest["uri"] not in self._used
            ):
                self._used.add(dest["uri"])
                return dict(dest)
        kind = "managed" if managed else "external"
        raise LookupError(f"No fresh {kind} destination of {membership} left; add more.")

    def uri(self, membership: str, *, managed: bool = True) -> str:
        """The URI of a fresh destination."""
        return str(self.take(membership, managed=managed)["uri"])
