"""The Engine.IO 3 server line on current Python (point 1's workaround).

``socketio_v4``'s stock async client manager hands coroutines to ``asyncio.wait``,
which Python >= 3.11 refuses, so every server-side emit fails; the emulator's
:class:`FixedAsyncManager` gathers them instead. :class:`LegacyAsyncServer` also routes
unknown events to a catch-all handler, like python-socketio 5 does.
"""

from __future__ import annotations

import sys

import pytest
from socketio_v4.asyncio_manager import AsyncManager

from airflow_provider_app2app.emulator.eio3_compat import (
    CATCH_ALL,
    FixedAsyncManager,
    LegacyAsyncServer,
)


class RecordingServer:
    """Stands in for the server the manager emits through."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, object, str, object]] = []

    async def _emit_internal(self, sid, event, data, namespace, ack_id):
        self.sent.append((sid, event, data, namespace, ack_id))


def manager_with_two_clients(manager_class):
    manager = manager_class()
    manager.set_server(RecordingServer())
    manager.initialize()
    manager.connect("a", "/api/v1")
    manager.connect("b", "/api/v1")
    return manager


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the breakage is Python >= 3.11")
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
async def test_stock_manager_emit_fails_on_this_python():
    manager = manager_with_two_clients(AsyncManager)
    with pytest.raises(TypeError, match="Passing coroutines is forbidden"):
        await manager.emit("data", ("x",), "/api/v1", room="a")


async def test_fixed_manager_emits_to_one_client():
    manager = manager_with_two_clients(FixedAsyncManager)
    await manager.emit("data", ("x",), "/api/v1", room="a")
    assert manager.server.sent == [("a", "data", ("x",), "/api/v1", None)]


async def test_fixed_manager_broadcasts_skips_and_registers_acks():
    manager = manager_with_two_clients(FixedAsyncManager)
    await manager.emit("data", "y", "/api/v1", skip_sid="b")
    await manager.emit("ping", None, "/api/v1", room="b", callback=lambda *a: None)
    sent = manager.server.sent
    assert [s[0] for s in sent] == ["a", "b"]
    assert sent[1][4] is not None  # an ack id was generated for the callback


async def test_fixed_manager_ignores_unknown_rooms():
    manager = manager_with_two_clients(FixedAsyncManager)
    await manager.emit("data", "z", "/elsewhere")
    await manager.emit("data", "z", "/api/v1", room="nobody")
    assert manager.server.sent == []


async def test_legacy_server_routes_unknown_events_to_catch_all():
    server = LegacyAsyncServer(async_mode="aiohttp")
    seen: list[tuple[object, ...]] = []

    async def catch_all(event, sid, *args):
        seen.append((event, sid, *args))
        return "caught"

    async def known(sid, *args):
        return "known"

    server.on(CATCH_ALL, catch_all, namespace="/api/v1")
    server.on("subscribe", known, namespace="/api/v1")
    assert await server._trigger_event("whatever", "/api/v1", "sid1", 1, 2) == "caught"
    assert await server._trigger_event("subscribe", "/api/v1", "sid1") == "known"
    assert await server._trigger_event("disconnect", "/api/v1", "sid1") is None
    assert seen == [("whatever", "sid1", 1, 2)]


def test_legacy_server_uses_the_fixed_manager_by_default():
    assert isinstance(LegacyAsyncServer(async_mode="aiohttp").manager, FixedAsyncManager)
