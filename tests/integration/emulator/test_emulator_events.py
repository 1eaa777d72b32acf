"""The events of PROTOCOL.md §2-§3 over the wire (point 3), for both generations.

``subscribe`` and ``produce`` in both payload dialects are acknowledged with
``"Subscribed."`` / ``"Message sent."``; messages arrive as ``data`` with an object
payload, the key and a timestamp; ``delivery-report`` carries the key; ``commit`` is
counted; spurious commits and unknown events are answered, not fatal. The
``--delivery-event`` and ``--payload-format`` switches are covered in
``test_emulator_switches.py``.
"""

from __future__ import annotations

import time

import pytest

from tests.support.clients import documented, proven


@pytest.mark.parametrize("dialect", [proven, documented], ids=["proven", "documented"])
async def test_produced_message_is_delivered_as_data_object(clients, pool, generation, dialect):
    sender, receiver = pool.uri("org1"), pool.uri("org2")
    consumer = await clients("org2", generation)
    producer = await clients("org1", generation)
    assert await consumer.subscribe(receiver) == (None, "Subscribed.")
    before = int(time.time() * 1000)
    assert await producer.produce(dialect(sender, receiver, "hello"), "key-1") == (
        None,
        "Message sent.",
    )
    delivery = await consumer.next_delivery()
    assert delivery.event == "data"
    assert delivery.payload == {"headers": {"from": sender, "to": receiver}, "content": "hello"}
    assert delivery.key == "key-1"
    assert before <= delivery.timestamp <= int(time.time() * 1000) + 1


async def test_delivery_report_reaches_the_producer_with_key_and_timestamp(
    clients, pool, generation
):
    producer = await clients("org1", generation)
    dst = pool.uri("org2")
    await producer.produce(proven(pool.uri("org1"), dst, "x"), "report-me")
    report = await producer.next_report()
    assert report["key"] == "report-me"
    assert isinstance(report["timestamp"], int)


async def test_message_without_key_is_reported_with_null_key(clients, pool, generation):
    producer = await clients("org1", generation)
    consumer = await clients("org2", generation)
    dst = pool.uri("org2")
    await consumer.subscribe(dst)
    assert await producer.produce(proven(pool.uri("org1"), dst, "no key")) == (
        None,
        "Message sent.",
    )
    assert (await producer.next_report())["key"] is None
    assert (await consumer.next_delivery()).key is None


async def test_binary_content_arrives_as_bytes(clients, pool, generation):
    producer = await clients("org1", generation)
    consumer = await clients("org2", generation)
    dst = pool.uri("org2")
    await consumer.subscribe(dst)
    blob = bytes(range(256)) * 4
    await producer.produce(proven(pool.uri("org1"), dst, blob), "bin")
    delivery = await consumer.next_delivery()
    assert delivery.payload["content"] == blob


async def test_node_buffer_content_is_accepted(clients, pool, generation):
    producer = await clients("org1", generation)
    consumer = await clients("org2", generation)
    dst = pool.uri("org2")
    await consumer.subscribe(dst)
    buffer = {"type": "Buffer", "data": [0xFF, 0x00, 0x41]}
    assert await producer.produce(proven(pool.uri("org1"), dst, buffer)) == (
        None,
        "Message sent.",
    )
    assert (await consumer.next_delivery()).payload["content"] == b"\xff\x00A"


async def test_messages_cross_generations(clients, pool):
    legacy = await clients("org1", "EIO3")
    modern = await clients("org2", "EIO4")
    dst_modern, dst_legacy = pool.uri("org2"), pool.uri("org1")
    await modern.subscribe(dst_modern)
    await legacy.subscribe(dst_legacy)
    await legacy.produce(proven(dst_legacy, dst_modern, "3 to 4"))
    await modern.produce(proven(dst_modern, dst_legacy, "4 to 3"))
    assert (await modern.next_delivery()).payload["content"] == "3 to 4"
    assert (await legacy.next_delivery()).payload["content"] == "4 to 3"


async def test_one_connection_may_subscribe_several_own_destinations(clients, pool, generation):
    consumer = await clients("org2", generation)
    producer = await clients("org1", generation)
    first, second = pool.uri("org2"), pool.uri("org2")
    assert await consumer.subscribe(first, second) == (None, "Subscribed.")
    await producer.produce(proven(pool.uri("org1"), first, "a"))
    await producer.produce(proven(pool.uri("org1"), second, "b"))
    contents = {(await consumer.next_delivery()).payload["content"] for _ in range(2)}
    assert contents == {"a", "b"}


async def test_subscribing_twice_is_harmless(clients, pool, generation, emulator):
    consumer = await clients("org2", generation)
    dst = pool.uri("org2")
    assert await consumer.subscribe(dst) == (None, "Subscribed.")
    assert await consumer.subscribe(dst) == (None, "Subscribed.")
    status = await emulator.destination_status_async(dst)
    assert status["standbys"] == []


async def test_commits_are_counted_in_delivery_order(clients, pool, generation, emulator):
    consumer = await clients("org2", generation, auto_commit=False, read_ahead=10)
    producer = await clients("org1", generation)
    dst = pool.uri("org2")
    await consumer.subscribe(dst)
    for index in range(4):
        await producer.produce(proven(pool.uri("org1"), dst, str(index)))
    for _ in range(4):
        await consumer.next_delivery()
    await consumer.commit()
    await consumer.commit()
    entry = await emulator.wait_for_destination(dst, committed=2)
    assert (entry["log_length"], entry["delivered"], entry["committed"]) == (4, 4, 2)


async def test_commit_with_nothing_outstanding_gets_an_exception_event(clients, generation):
    consumer = await clients("org2", generation, auto_commit=False)
    await consumer.commit()
    text = await consumer.next_exception()
    assert "no delivered message is outstanding" in text
    assert consumer.connected


async def test_unknown_event_is_answered_with_an_error(clients, generation):
    client = await clients("org1", generation)
    err, result = await client.call("unsubscribe", ["x"])
    assert result is None
    assert "Unknown event 'unsubscribe'" in err
    assert "subscribe, produce, commit" in err


async def test_reserved_event_names_emitted_by_a_client_are_refused(clients, generation):
    client = await clients("org1", generation)
    err, _ = await client.call("disconnect")
    assert "reserved" in err
    assert client.connected
