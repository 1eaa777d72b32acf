"""Helpers for the client integration tests: emulators by flags, tenants, clients.

One emulator process per combination of flags serves the whole session; every test
takes destinations nobody used before from a :class:`DestinationPool`, so tests do
not see each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from airflow_provider_app2app.client import (
    App2AppClient,
    AsyncApp2AppClient,
    BackoffPolicy,
    ClientSettings,
    Identity,
)
from tests.support.emulator import EmulatorProcess, start_emulator
from tests.support.environments import DestinationPool, write_test_config

FAST_BACKOFF = BackoffPolicy(initial=0.05, maximum=0.5)


class Tenant:
    """An emulator plus the fresh destinations and settings a test needs.

    :param emulator: the running emulator.
    """

    def __init__(self, emulator: EmulatorProcess) -> None:
        self.emulator = emulator
        self.pool = DestinationPool(emulator.environment)

    def managed(self, membership: str) -> str:
        return self.pool.uri(membership, managed=True)

    def external(self, membership: str) -> tuple[str, Identity]:
        dest = self.pool.take(membership, managed=False)
        return dest["uri"], self.identity_of(dest)

    def identity_of(self, dest: dict[str, Any]) -> Identity:
        base = self.emulator.data_dir
        key = Path(dest["private_key_path"])
        cert = Path(dest["certificate_path"])
        key = key if key.is_absolute() else base / key
        cert = cert if cert.is_absolute() else base / cert
        return Identity.from_pem(key.read_text(), cert.read_text())

    def settings(self, membership: str, generation: str, **fields: Any) -> ClientSettings:
        username, password = self.emulator.credential(membership)
        values: dict[str, Any] = {
            "endpoint": self.emulator.endpoint,
            "username": username,
            "password": password,
            "socketio_version": generation,
            "connect_timeout": 5.0,
            "operation_timeout": 10.0,
            "backoff": FAST_BACKOFF,
        }
        values.update(fields)
        return ClientSettings(**values)


class Emulators:
    """Session registry: one emulator per tuple of command-line flags."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._running: dict[tuple[str, ...], EmulatorProcess] = {}
        self._tenants: dict[tuple[str, ...], Tenant] = {}
        self._config: Path | None = None

    def config(self) -> Path:
        if self._config is None:
            self._config = write_test_config(self.root / "config", managed=80, external=16)
        return self._config

    def get(self, *flags: str) -> EmulatorProcess:
        if flags not in self._running:
            data_dir = self.root / ("emu-" + ("-".join(f.strip("-") for f in flags) or "default"))
            self._running[flags] = start_emulator(
                data_dir, "--config", str(self.config()), "--in-memory", *flags
            )
        return self._running[flags]

    def tenant(self, *flags: str) -> Tenant:
        """The shared tenant (one destination pool) of the emulator with ``flags``."""
        if flags not in self._tenants:
            self._tenants[flags] = Tenant(self.get(*flags))
        return self._tenants[flags]

    def start_private(self, name: str, *flags: str, port: int = 0) -> EmulatorProcess:
        """A durable (SQLite) emulator of its own, for tests that kill it."""
        return start_emulator(self.root / name, "--config", str(self.config()), *flags, port=port)

    def stop_all(self) -> None:
        for emulator in self._running.values():
            emulator.stop()
        self._running.clear()


@contextlib.contextmanager
def sync_client(settings: ClientSettings, **kwargs: Any) -> Iterator[App2AppClient]:
    with App2AppClient(settings, **kwargs) as client:
        yield client


@contextlib.asynccontextmanager
async def async_client(
    settings: ClientSettings, **kwargs: Any
) -> AsyncIterator[AsyncApp2AppClient]:
    async with AsyncApp2AppClient(settings, **kwargs) as client:
        yield client


async def in_thread(function: Any, *args: Any) -> Any:
    """Run a blocking call without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)
