"""Connecting (points 1 and 2): both Engine.IO generations on one port, Basic auth.

Engine.IO 4 (python-socketio 5) and Engine.IO 3 (socketio_v4) clients reach the same
emulator port and the same ``/api/v1`` namespace; the Authorization header works with
and without the ``Basic`` prefix; wrong or missing credentials are refused with a
reason that reaches the client's ``connect_error`` and never contains the password.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
import socketio
import socketio_v4

from airflow_provider_app2app.protocol.endpoint import basic_auth_header
from tests.support.clients import ConnectRefused, RawClient, proven


async def test_both_generations_are_served_on_one_port(emulator, clients):
    modern = await clients("org1", "EIO4")
    legacy = await clients("org1", "EIO3")
    status = await emulator.wait_for_status_async(lambda s: len(s["connections"]) >= 2)
    generations = {c["generation"] for c in status["connections"]}
    assert {"EIO3", "EIO4"} <= generations
    assert {c["username"] for c in status["connections"]} >= {"org1-app"}
    assert modern.connected and legacy.connected


@pytest.mark.parametrize("basic_prefix", [True, False], ids=["with-Basic", "bare-base64"])
async def test_basic_auth_is_accepted_with_or_without_prefix(emulator, generation, basic_prefix):
    username, password = emulator.credential("org2")
    client = RawClient(emulator.base_url, username, password, generation, basic_prefix=basic_prefix)
    try:
        await client.connect()
        assert client.connected
    finally:
        await client.disconnect()


@pytest.mark.parametrize(
    ("username", "password", "fragment"),
    [
        ("org1-app", "wrong-password", "Wrong password for app credential 'org1-app'"),
        ("nobody", "x", "Unknown app credential 'nobody'"),
        (None, None, "No Authorization header"),
    ],
    ids=["wrong-password", "unknown-user", "no-header"],
)
async def test_bad_credentials_are_refused_with_a_reason(
    emulator, generation, username, password, fragment
):
    client = RawClient(emulator.base_url, username, password, generation)
    with pytest.raises(ConnectRefused) as refused:
        await client.connect()
    assert fragment in refused.value.text
    if password:
        assert password not in refused.value.text
    assert not client.connected or generation == "EIO3"
    await client.disconnect()


async def test_garbled_authorization_header_is_refused(emulator, generation):
    client = RawClient(emulator.base_url, None, generation=generation, authorization="Basic !!!")
    with pytest.raises(ConnectRefused) as refused:
        await client.connect()
    assert "not HTTP Basic" in refused.value.text


async def test_bad_tuning_parameter_is_refused_with_the_parameter_named(emulator, generation):
    username, password = emulator.credential("org1")
    client = RawClient(
        emulator.base_url, username, password, generation, tuning={"read_ahead": "zero"}
    )
    with pytest.raises(ConnectRefused) as refused:
        await client.connect()
    assert "read_ahead" in refused.value.text


async def test_tuning_parameters_arrive_from_the_handshake_query(emulator, clients, generation):
    client = await clients("org1", generation, auto_commit=False, read_ahead=7, batch_size=3)
    status = await emulator.status_async()
    mine = [c for c in status["connections"] if c["tuning"]["read_ahead"] == 7]
    assert mine and mine[0]["tuning"] == {
        "auto_commit": False,
        "read_ahead": 7,
        "batch_size": 3,
        "batch_timeout": 250,
    }
    assert mine[0]["generation"] == generation
    await client.disconnect()


async def test_polling_transport_works_for_both_generations(emulator, pool, generation):
    username, password = emulator.credential("org1")
    client = RawClient(emulator.base_url, username, password, generation, transports=("polling",))
    try:
        await client.connect()
        dst = pool.uri("org1")
        assert await client.subscribe(dst) == (None, "Subscribed.")
        assert await client.produce(proven(dst, dst, "over polling"), "p1") == (
            None,
            "Message sent.",
        )
        delivery = await client.next_delivery()
        assert delivery.payload["content"] == "over polling"
    finally:
        await client.disconnect()


async def test_legacy_server_emits_despite_python_311_asyncio_wait_change(emulator, clients, pool):
    """socketio_v4's stock emit fails on Python >= 3.11; the emulator's fix delivers."""
    legacy = await clients("org1", "EIO3")
    dst = pool.uri("org1")
    await legacy.subscribe(dst)
    await legacy.produce(proven(dst, dst, "to an EIO3 client"), "legacy")
    delivery = await legacy.next_delivery()
    report = await legacy.next_report()
    assert delivery.payload["content"] == "to an EIO3 client"
    assert report["key"] == "legacy"


def _sync_roundtrip(module, base_url, username, password, dst, result):
    client = module.Client(reconnection=False)
    got = threading.Event()
    namespace_ready = threading.Event()
    deliveries: list[tuple[object, ...]] = []
    client.on("data", lambda *args: (deliveries.append(args), got.set()), namespace="/api/v1")
    client.on("connect", lambda *args: namespace_ready.set(), namespace="/api/v1")
    client.connect(
        base_url,
        headers={"Authorization": basic_auth_header(username, password)},
        transports=["websocket"],
        namespaces=["/api/v1"],
    )
    try:
        assert namespace_ready.wait(10)
        result.append(client.call("subscribe", [dst], namespace="/api/v1", timeout=10))
        message = {"headers": {"from": dst, "to": dst}, "content": "sync"}
        result.append(client.call("produce", (message, "s1"), namespace="/api/v1", timeout=10))
        assert got.wait(10)
        result.append(deliveries[0])
    finally:
        client.disconnect()


@pytest.mark.parametrize("module", [socketio, socketio_v4], ids=["Client-EIO4", "Client-EIO3"])
async def test_synchronous_clients_of_both_generations_work(emulator, pool, module):
    username, password = emulator.credential("org1")
    dst = pool.uri("org1")
    result: list[object] = []
    await asyncio.to_thread(
        _sync_roundtrip, module, emulator.base_url, username, password, dst, result
    )
    assert result[0] == (None, "Subscribed.")
    assert result[1] == (None, "Message sent.")
    assert result[2][0]["content"] == "sync"
    assert result[2][1] == "s1"
