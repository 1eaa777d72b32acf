"""Bad input never takes the emulator down (point 9).

Wrong types, missing fields, oversize content, unknown and reserved events, floods of
subscribes, garbage Engine.IO frames and random handshake queries each get an ack
error or are ignored and logged. A hypothesis test throws random arguments at every
event over both protocol generations; afterwards a well-behaved client is still
served correctly and the emulator logged no unhandled error.
"""

from __future__ import annotations

import asyncio
import threading

import aiohttp
import pytest
import socketio
import socketio_v4
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_app2app.protocol.endpoint import basic_auth_header
from tests.support.clients import ConnectRefused, RawClient, proven

NAMESPACE = "/api/v1"


async def assert_still_serving(emulator, clients, pool):
    """A fresh, well-behaved pair of clients round-trips a message."""
    assert emulator.process.poll() is None
    dst = pool.uri("org2")
    consumer = await clients("org2", "EIO4")
    producer = await clients("org1", "EIO3")
    assert await consumer.subscribe(dst) == (None, "Subscribed.")
    assert await producer.produce(proven(pool.uri("org1"), dst, "still here"), "ok") == (
        None,
        "Message sent.",
    )
    delivery = await consumer.next_delivery()
    assert (delivery.payload["content"], delivery.key) == ("still here", "ok")
    assert await asyncio.to_thread(emulator.get, "/healthz") == (200, {"status": "ok"})


def unhandled_errors(emulator, since: int) -> list[str]:
    """Output lines that show an error escaping a handler: a request aiohttp had to
    catch, a traceback through the emulator's own code, or a handler's failure ack.

    (python-engineio logs a traceback of its own for an unknown Engine.IO packet type
    and carries on; that one is the library's choice and is not counted.)
    """
    return [
        line
        for line in emulator.output[since:]
        if "Error handling request" in line
        or ("File " in line and "airflow_provider_app2app" in line)
        or "failed handling" in line
        or "Background task" in line
    ]


# ----------------------------------------------------------------- explicit cases


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "produce needs a message"),
        ((42,), "must be an object"),
        (("not json",), "not JSON"),
        (({"headers": "x"},), "'headers' must be an object"),
        (({"headers": {"to": "kld://x"}, "content": "c"},), "'from'"),
        (({"from": "kld://a", "to": "kld://b"},), "no content"),
        (({"from": "kld://a", "to": "kld://b", "content": "c"}, ["key"]), "key must be a string"),
    ],
    ids=["nothing", "int", "bad-json", "headers-str", "no-from", "no-content", "list-key"],
)
async def test_malformed_produce_gets_a_clear_ack_error(clients, generation, args, fragment):
    client = await clients("org1", generation)
    err, result = await client.call("produce", *args)
    assert result is None
    assert fragment in err
    assert client.connected


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "subscribe expects a list"),
        ((7,), "subscribe expects a list"),
        (([1, 2],), "subscribe expects a list"),
        (([],), "empty list"),
        ((["kld://x"] * 300 + [f"kld://{i}" for i in range(300)],), "the limit is 256"),
    ],
    ids=["nothing", "int", "ints", "empty", "too-many"],
)
async def test_malformed_subscribe_gets_a_clear_ack_error(clients, generation, args, fragment):
    client = await clients("org1", generation)
    err, result = await client.call("subscribe", *args)
    assert result is None
    assert fragment in err


async def test_oversize_content_is_refused_with_the_limit(spawn_emulator, clients):
    emulator = spawn_emulator("--in-memory", "--max-content-bytes", "1000")
    client = await clients("org1", target=emulator)
    src, dst = emulator.uri("org1-m000"), emulator.uri("org2-m000")
    assert await client.produce(proven(src, dst, "x" * 1000)) == (None, "Message sent.")
    err, result = await client.produce(proven(src, dst, b"x" * 1001))
    assert result is None
    assert "1001 bytes" in err and "at most 1000 bytes" in err
    assert "--max-content-bytes" in err
    assert (await emulator.destination_status_async(dst))["log_length"] == 1


async def test_default_limit_is_one_mebibyte(clients, pool, generation):
    client = await clients("org1", generation)
    src, dst = pool.uri("org1"), pool.uri("org2")
    err, _ = await client.call("produce", proven(src, dst, b"\xff" * ((1 << 20) + 1)), timeout=20)
    assert "at most 1048576 bytes" in err
    ok = await client.call("produce", proven(src, dst, b"\xff" * (1 << 20)), timeout=20)
    assert ok == (None, "Message sent.")


async def test_a_frame_beyond_the_transport_limit_only_closes_that_connection(
    emulator, clients, pool, generation
):
    client = await clients("org1", generation)
    huge = proven(pool.uri("org1"), pool.uri("org2"), "x" * (10 << 20))
    with pytest.raises(Exception):  # noqa: B017 - the client sees a dropped socket or timeout
        await client.call("produce", huge, timeout=3)
    await assert_still_serving(emulator, clients, pool)


async def test_a_flood_of_subscribes_is_answered_and_deduplicated(
    emulator, clients, pool, generation
):
    client = await clients("org2", generation)
    own = [pool.uri("org2") for _ in range(3)]
    calls = [client.subscribe(own[i % 3]) for i in range(600)]
    calls += [client.subscribe(pool.uri("org1") if i == 0 else "kld://bogus") for i in range(100)]
    acks = await asyncio.gather(*calls)
    assert acks[:600] == [(None, "Subscribed.")] * 600
    assert all(err and result is None for err, result in acks[600:])
    status = await emulator.status_async()
    mine = [c for c in status["connections"] if set(c["subscriptions"]) == set(own)]
    assert len(mine) == 1
    await assert_still_serving(emulator, clients, pool)


@pytest.mark.parametrize("eio", ["4", "3"])
async def test_garbage_engineio_frames_do_not_hurt_the_server(emulator, clients, pool, eio):
    since = len(emulator.output)
    baseline = len((await emulator.status_async())["connections"])
    frames: list[str | bytes] = [
        "42/api/v1,[",
        "4{",
        "9",
        "",
        "42/api/v1,1[null]",
        "42/api/v1,[1,2,3]",
        '45-/api/v1,["produce",{"_placeholder":true,"num":0}]',
        "41/api/v1,",
        "40/nope,",
        b"\x00\xff\x13\x37",
        "2probe",
        "x",
        "",
    ]
    url = f"{emulator.base_url.replace('http', 'ws')}/socket.io/?EIO={eio}&transport=websocket"
    headers = {"Authorization": basic_auth_header(*emulator.credential("org1"))}
    async with aiohttp.ClientSession() as session:
        for frame in frames:
            async with session.ws_connect(url, headers=headers) as ws:
                await ws.receive(timeout=5)  # OPEN
                if eio == "4":
                    await ws.send_str("40/api/v1,")
                for _ in range(2):
                    if isinstance(frame, bytes):
                        await ws.send_bytes(frame)
                    else:
                        await ws.send_str(frame)
                await asyncio.sleep(0.02)
        async with session.post(
            f"{emulator.base_url}/socket.io/?EIO={eio}&transport=polling&sid=bogus", data=b"\x00"
        ) as response:
            assert response.status == 400
        async with session.get(f"{emulator.base_url}/socket.io/?EIO=7") as response:
            assert response.status == 400
    # every session that sent garbage is closed at once, not left to time out
    await emulator.wait_for_status_async(lambda s: len(s["connections"]) == baseline, 5)
    await assert_still_serving(emulator, clients, pool)
    assert unhandled_errors(emulator, since) == []


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    query=st.dictionaries(
        st.sampled_from(["auto_commit", "read_ahead", "batch_size", "batch_timeout", "x", "EIO"]),
        st.one_of(st.text(max_size=8), st.integers(-5, 10**12).map(str)),
        max_size=4,
    )
)
async def test_random_handshake_queries_connect_or_are_refused_with_a_reason(emulator, query):
    username, password = emulator.credential("org1")
    query = {k: v for k, v in query.items() if k != "EIO"}
    client = RawClient(emulator.base_url, username, password, "EIO4", tuning=query)
    try:
        await client.connect()
    except ConnectRefused as refused:
        assert any(name in refused.text for name in query)
    finally:
        await client.disconnect()
    assert emulator.process.poll() is None


# -------------------------------------------------------------------- hypothesis

_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.binary(max_size=40),
)
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _uris(own: list[str], foreign: list[str]) -> st.SearchStrategy[object]:
    return st.sampled_from([*own, *foreign, "", "kld://", "kld://app2app/m/org1"]) | _json


def _message(uris: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    signature = st.one_of(st.none(), st.binary(max_size=300), st.text(max_size=30), _json)
    content = st.one_of(st.text(max_size=60), st.binary(max_size=60), _json)
    proven_ = st.fixed_dictionaries(
        {
            "headers": st.fixed_dictionaries(
                {"from": uris, "to": uris}, optional={"signature": signature}
            ),
            "content": content,
        }
    )
    documented_ = st.fixed_dictionaries(
        {"from": uris, "to": uris}, optional={"content": content, "signature": signature}
    )
    return st.one_of(proven_, documented_, _json)


class SyncFuzzClient:
    """A synchronous client of either generation, connected once for all examples."""

    def __init__(self, module, emulator) -> None:
        self.client = module.Client(reconnection=False)
        ready = threading.Event()
        self.client.on("connect", lambda *args: ready.set(), namespace=NAMESPACE)
        self.client.connect(
            emulator.base_url,
            headers={"Authorization": basic_auth_header(*emulator.credential("org1"))},
            transports=["websocket"],
            namespaces=[NAMESPACE],
        )
        assert ready.wait(10)

    def call(self, event, args):
        return self.client.call(event, args, namespace=NAMESPACE, timeout=10)

    def emit(self, event, args):
        self.client.emit(event, args, namespace=NAMESPACE)

    @property
    def connected(self) -> bool:
        return bool(self.client.connected)

    def close(self) -> None:
        self.client.disconnect()


@pytest.fixture(params=[socketio, socketio_v4], ids=["EIO4", "EIO3"])
def fuzz_client(request, emulator):
    client = SyncFuzzClient(request.param, emulator)
    try:
        yield client
    finally:
        client.close()


def test_random_arguments_to_every_event_never_break_the_server(emulator, pool, fuzz_client):
    own = [pool.uri("org1") for _ in range(2)]
    foreign = [pool.uri("org2")]
    uris = _uris(own, foreign)
    events = st.sampled_from(
        ["subscribe", "produce", "commit", "connect", "disconnect", "message", "data", "x"]
    ) | st.text(max_size=12)
    arguments = st.one_of(
        st.tuples(st.lists(uris, max_size=4)),
        st.tuples(_message(uris)),
        st.tuples(_message(uris), _json),
        st.lists(_json, max_size=3).map(tuple),
    )
    since = len(emulator.output)
    thrown: list[str] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(event=events, args=arguments, with_ack=st.booleans())
    def throw(event, args, with_ack):
        thrown.append(event)
        if with_ack:
            answer = fuzz_client.call(event, args)
            if event != "commit":  # commit acks with no arguments
                err, result = answer
                assert (err is None) != (result is None)
                assert isinstance(err or result, str)
        else:
            fuzz_client.emit(event, args)
        assert fuzz_client.connected

    throw()
    assert len(thrown) >= 150
    assert emulator.process.poll() is None
    assert unhandled_errors(emulator, since) == []


async def test_well_behaved_clients_are_served_after_the_fuzzing(emulator, clients, pool):
    await assert_still_serving(emulator, clients, pool)
