"""Protocol-generation negotiation against single-generation servers.

Promises checked: ``auto`` connects to a modern-only server with the modern
generation and to a legacy-only server by falling back to the legacy one, remembers
the choice per endpoint (the next client starts with it), and a pinned generation the
server does not speak fails with ProtocolMismatchError naming ``socketio_version``.
A server-initiated namespace disconnect is followed by a reconnect.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_app2app.client import (
    App2AppClient,
    AsyncApp2AppClient,
    ClientSettings,
    ProtocolMismatchError,
)
from airflow_provider_app2app.client.negotiation import attempt_order, remembered_generation
from tests.integration.client.tiny_servers import TinyServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ME = "kld://app2app/m/org1/e/local/s/app2app/d/me"


@pytest.fixture(params=["modern", "legacy"], ids=["modern-only", "legacy-only"])
def server(request):
    tiny = TinyServer(request.param).start()
    try:
        yield tiny
    finally:
        tiny.stop()


def settings(server: TinyServer, version: str = "auto", **fields) -> ClientSettings:
    return ClientSettings(
        endpoint=server.endpoint,
        username="any",
        password="any",
        socketio_version=version,
        default_sender=ME,
        connect_timeout=5,
        **fields,
    )


def test_auto_finds_the_servers_generation_and_remembers_it_sync(server):
    with App2AppClient(settings(server)) as client:
        assert client.generation == server.generation
        client.subscribe(ME)
        assert client.produce(ME, "hello", key="k").ack_text == "Message sent."
    assert remembered_generation(settings(server)) == server.generation
    assert attempt_order(settings(server))[0] == server.generation


async def test_auto_finds_the_servers_generation_async(server):
    async with AsyncApp2AppClient(settings(server)) as client:
        assert client.generation == server.generation
        await client.subscribe(ME)
        await client.produce(ME, {"x": 1})
    async with AsyncApp2AppClient(settings(server)) as again:
        assert again.generation == server.generation
    assert server.connections == 2


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_pinning_the_other_generation_fails_naming_the_setting(server, flavour):
    other = "legacy" if server.generation == "modern" else "modern"
    pinned = settings(server, other)
    with pytest.raises(ProtocolMismatchError) as caught:
        if flavour == "sync":
            App2AppClient(pinned).connect()
        else:
            await AsyncApp2AppClient(pinned).connect()
    message = str(caught.value)
    assert f"socketio_version='{other}'" in message
    assert f"'{server.generation}'" in message or "'auto'" in message
    assert server.connections == 0


async def test_auto_falls_back_over_long_polling_too(server):
    polling = settings(server, transports=("polling", "websocket"))
    async with AsyncApp2AppClient(polling) as client:
        assert client.generation == server.generation
        await client.produce(ME, "over polling")


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_server_side_disconnect_is_followed_by_a_reconnect(server, flavour):
    from airflow_provider_app2app.client import BackoffPolicy

    fast = settings(server, backoff=BackoffPolicy(initial=0.05, maximum=0.2))
    if flavour == "sync":
        with App2AppClient(fast) as client:
            client.subscribe(ME)
            client._transport.emit("kick", ())
            deadline = time.monotonic() + 10
            while client.connection_number < 2 or not client.connected:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            client.produce(ME, "after the kick")
    else:
        async with AsyncApp2AppClient(fast) as client:
            await client.subscribe(ME)
            await client._transport.emit("kick", ())
            deadline = time.monotonic() + 10
            while client.connection_number < 2 or not client.connected:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            await client.produce(ME, "after the kick")
    assert server.connections == 2
