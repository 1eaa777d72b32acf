"""Test doubles for the client unit tests: settings, identities and a fake transport.

The fake transport stands in for Socket.IO: it records every emit, answers
acknowledgements from a script, and lets a test deliver server events or drop the
connection, so the clients' shared logic runs without a network.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

from airflow_provider_app2app.client import ClientSettings, Identity

ENDPOINT = "ws://127.0.0.1:9/api/v1"
ME = "kld://app2app/m/org1/e/local/s/app2app/d/me"
PEER = "kld://app2app/m/org2/e/local/s/app2app/d/peer"
MY_EXTERNAL = "kld://app2app/m/org1/e/local/s/app2app/d/me-external"
PEER_EXTERNAL = "kld://app2app/m/org2/e/local/s/app2app/d/peer-external"


@functools.cache
def identity(name: str) -> Identity:
    """A generated RSA identity, cached per name for the whole run (keygen is slow)."""
    return Identity.generate(name)


def make_settings(**overrides: Any) -> ClientSettings:
    fields: dict[str, Any] = {
        "endpoint": ENDPOINT,
        "username": "org1-app",
        "password": "s3cret-pa55word",
        "default_sender": ME,
        "connect_timeout": 2.0,
        "operation_timeout": 2.0,
    }
    fields.update(overrides)
    return ClientSettings(**fields)


class FakeTransport:
    """A scripted stand-in for the Socket.IO adapters (sync and asyncio alike)."""

    instances: ClassVar[list[FakeTransport]] = []
    connect_errors: ClassVar[list[BaseException]] = []
    acks: ClassVar[dict[str, Callable[[tuple[Any, ...]], tuple[Any, ...] | None]]] = {}

    def __init__(self, settings, generation, on_event, on_disconnect) -> None:
        self.settings = settings
        self.generation = generation
        self.on_event = on_event
        self.on_disconnect = on_disconnect
        self.emitted: list[tuple[str, tuple[Any, ...]]] = []
        self.pending: list[tuple[str, tuple[Any, ...], Callable[..., None]]] = []
        self._connected = False
        FakeTransport.instances.append(self)

    # both sync and async clients call these -------------------------------------
    def _connect(self) -> None:
        if FakeTransport.connect_errors:
            raise FakeTransport.connect_errors.pop(0)
        self._connected = True

    def _emit(self, event, args, callback=None) -> None:
        from airflow_provider_app2app.client import ConnectionLostError

        if not self._connected:
            raise ConnectionLostError("down")
        self.emitted.append((event, args))
        if callback is None:
            return
        responder = FakeTransport.acks.get(event, lambda a: (None, "OK."))
        answer = responder(args)
        if answer is None:
            self.pending.append((event, args, callback))
        else:
            callback(*answer)

    @property
    def connected(self) -> bool:
        return self._connected

    def deliver(self, event: str, *args: Any) -> None:
        self.on_event(event, args)

    def drop(self) -> None:
        self._connected = False
        self.on_disconnect()

    def events(self, name: str) -> list[tuple[Any, ...]]:
        return [args for event, args in self.emitted if event == name]


class FakeSyncTransport(FakeTransport):
    def connect(self) -> None:
        self._connect()

    def emit(self, event, args, callback=None) -> None:
        self._emit(event, args, callback)

    def close(self) -> None:
        self._connected = False


class FakeAsyncTransport(FakeTransport):
    async def connect(self) -> None:
        self._connect()

    async def emit(self, event, args, callback=None) -> None:
        self._emit(event, args, callback)

    async def close(self) -> None:
        self._connected = False


class SyncDriver:
    """Drives an :class:`App2AppClient` (the blocking flavour) in tests."""

    flavour = "sync"

    def __init__(self, settings: ClientSettings, **kwargs: Any) -> None:
        from airflow_provider_app2app.client import App2AppClient

        self.client = App2AppClient(settings, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def settle(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        import time

        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition never held"
            time.sleep(0.005)

    def finish(self) -> None:
        self.client.close()


class AsyncDriver:
    """Drives an :class:`AsyncApp2AppClient` on a private event loop, call by call."""

    flavour = "async"

    def __init__(self, settings: ClientSettings, **kwargs: Any) -> None:
        import asyncio

        from airflow_provider_app2app.client import AsyncApp2AppClient

        self.loop = asyncio.new_event_loop()
        self.client = AsyncApp2AppClient(settings, **kwargs)

    def __getattr__(self, name: str) -> Any:
        import inspect

        attribute = getattr(self.client, name)
        if inspect.iscoroutinefunction(attribute):
            return lambda *a, **k: self.loop.run_until_complete(attribute(*a, **k))
        return attribute

    def settle(self, predicate: Callable[[], bool], timeout: float = 3.0) -> None:
        import asyncio
        import time

        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition never held"
            self.loop.run_until_complete(asyncio.sleep(0.005))

    def finish(self) -> None:
        self.loop.run_until_complete(self.client.close())
        self.loop.close()
