"""Delivery semantics of PROTOCOL.md §4 (point 6), over the wire, both generations.

One ordered log and one committed position per destination; one active subscriber,
standbys that take over in subscribe order; ``auto_commit``; ``read_ahead`` windows
that stall without commits and open with each counted commit; redelivery of every
uncommitted message after a disconnect; producer-side batches that are acknowledged
and reported once stored.
"""

from __future__ import annotations

import asyncio

from tests.support.clients import proven


async def produce_many(producer, sender, receiver, count, prefix="m"):
    for index in range(count):
        assert await producer.produce(
            proven(sender, receiver, f"{prefix}{index}"), f"k{index}"
        ) == (
            None,
            "Message sent.",
        )


async def contents(client, count, timeout=5):
    return [(await client.next_delivery(timeout)).payload["content"] for _ in range(count)]


async def test_read_ahead_stalls_delivery_until_counted_commits_arrive(
    clients, pool, generation, emulator
):
    dst = pool.uri("org2")
    consumer = await clients("org2", generation, auto_commit=False, read_ahead=3)
    producer = await clients("org1", generation)
    await consumer.subscribe(dst)
    await produce_many(producer, pool.uri("org1"), dst, 8)
    assert await contents(consumer, 3) == ["m0", "m1", "m2"]
    assert await consumer.no_delivery(0.3)
    entry = await emulator.destination_status_async(dst)
    assert (entry["log_length"], entry["delivered"], entry["committed"]) == (8, 3, 0)
    await consumer.commit()
    assert await contents(consumer, 1) == ["m3"]
    assert await consumer.no_delivery(0.2)
    await consumer.commit()
    await consumer.commit()
    assert await contents(consumer, 2) == ["m4", "m5"]
    entry = await emulator.wait_for_destination(dst, committed=3)
    assert entry["delivered"] == 6


async def test_auto_commit_delivers_everything_and_commits_on_send(
    clients, pool, generation, emulator
):
    dst = pool.uri("org2")
    consumer = await clients("org2", generation)
    producer = await clients("org1", generation)
    await consumer.subscribe(dst)
    await produce_many(producer, pool.uri("org1"), dst, 20)
    assert await contents(consumer, 20) == [f"m{i}" for i in range(20)]
    await emulator.wait_for_destination(dst, committed=20, committed_durable=20, delivered=20)


async def test_messages_produced_before_subscribing_are_delivered_in_order(
    clients, pool, generation
):
    dst = pool.uri("org2")
    producer = await clients("org1", generation)
    await produce_many(producer, pool.uri("org1"), dst, 5)
    consumer = await clients("org2", generation)
    await consumer.subscribe(dst)
    assert await contents(consumer, 5) == [f"m{i}" for i in range(5)]


async def test_only_the_active_subscriber_receives_and_a_standby_takes_over(
    clients, pool, generation, emulator
):
    dst = pool.uri("org2")
    active = await clients("org2", generation, auto_commit=False, read_ahead=10)
    standby = await clients("org2", "EIO3" if generation == "EIO4" else "EIO4")
    producer = await clients("org1", generation)
    await active.subscribe(dst)
    await standby.subscribe(dst)
    entry = await emulator.destination_status_async(dst)
    assert entry["active"] is not None and len(entry["standbys"]) == 1
    await produce_many(producer, pool.uri("org1"), dst, 4)
    assert await contents(active, 4) == ["m0", "m1", "m2", "m3"]
    assert await standby.no_delivery(0.3)
    await active.commit()
    await emulator.wait_for_destination(dst, committed=1)
    await active.disconnect()
    assert await contents(standby, 3) == ["m1", "m2", "m3"]
    entry = await emulator.wait_for_destination(dst, committed=4)
    assert entry["standbys"] == []


async def test_standbys_take_over_in_subscribe_order(clients, pool, generation):
    dst = pool.uri("org2")
    first = await clients("org2", generation)
    second = await clients("org2", generation)
    third = await clients("org2", generation)
    producer = await clients("org1", generation)
    for client in (first, second, third):
        await client.subscribe(dst)
    await first.disconnect()
    await produce_many(producer, pool.uri("org1"), dst, 1)
    assert await contents(second, 1) == ["m0"]
    assert await third.no_delivery(0.2)


async def test_uncommitted_messages_are_redelivered_when_a_subscriber_returns(
    clients, pool, generation, emulator
):
    dst = pool.uri("org2")
    consumer = await clients("org2", generation, auto_commit=False, read_ahead=5)
    producer = await clients("org1", generation)
    await consumer.subscribe(dst)
    await produce_many(producer, pool.uri("org1"), dst, 5)
    assert await contents(consumer, 5) == [f"m{i}" for i in range(5)]
    await consumer.commit()
    await consumer.commit()
    await emulator.wait_for_destination(dst, committed=2)
    await consumer.disconnect()
    entry = await emulator.wait_for_destination(dst, active=None)
    assert entry["delivered"] == entry["committed"] == 2
    returning = await clients("org2", generation, auto_commit=False, read_ahead=5)
    await returning.subscribe(dst)
    assert await contents(returning, 3) == ["m2", "m3", "m4"]


async def test_batch_of_five_is_acknowledged_and_reported_once_stored(
    clients, pool, generation, emulator
):
    dst = pool.uri("org2")
    producer = await clients("org1", generation, batch_size=5, batch_timeout=30000)
    sender = pool.uri("org1")
    loop = asyncio.get_running_loop()
    started = loop.time()
    first_four = [
        asyncio.ensure_future(producer.produce(proven(sender, dst, f"b{i}"), f"b{i}"))
        for i in range(4)
    ]
    await asyncio.sleep(0.3)
    assert not any(task.done() for task in first_four)
    assert producer.reports.empty()
    assert (await emulator.destination_status_async(dst))["log_length"] == 0
    fifth = producer.produce(proven(sender, dst, "b4"), "b4")
    acks = await asyncio.wait_for(asyncio.gather(*first_four, fifth), 5)
    assert acks == [(None, "Message sent.")] * 5
    assert loop.time() - started < 5
    reports = [await producer.next_report() for _ in range(5)]
    assert [r["key"] for r in reports] == [f"b{i}" for i in range(5)]
    status = await emulator.status_async()
    assert (await emulator.destination_status_async(dst))["log_length"] == 5
    mine = [c for c in status["connections"] if c["tuning"]["batch_size"] == 5]
    assert mine[0]["batches"] == 1 and mine[0]["produced"] == 5


async def test_partial_batch_is_sealed_after_batch_timeout(clients, pool, generation):
    dst = pool.uri("org2")
    producer = await clients("org1", generation, batch_size=5, batch_timeout=400)
    loop = asyncio.get_running_loop()
    started = loop.time()
    acks = await asyncio.gather(
        *(producer.produce(proven(pool.uri("org1"), dst, f"t{i}")) for i in range(2))
    )
    assert acks == [(None, "Message sent.")] * 2
    assert loop.time() - started >= 0.38
    assert len([await producer.next_report() for _ in range(2)]) == 2


async def test_batched_messages_are_still_delivered_and_committed_one_by_one(
    clients, pool, generation, emulator
):
    dst = pool.uri("org2")
    consumer = await clients("org2", generation, auto_commit=False, read_ahead=2)
    producer = await clients("org1", generation, batch_size=5, batch_timeout=100)
    await consumer.subscribe(dst)
    await asyncio.gather(
        *(producer.produce(proven(pool.uri("org1"), dst, f"x{i}")) for i in range(5))
    )
    assert await contents(consumer, 2) == ["x0", "x1"]
    for expected in ["x2", "x3", "x4"]:
        await consumer.commit()
        assert await contents(consumer, 1) == [expected]
    await consumer.commit()
    await consumer.commit()
    await emulator.wait_for_destination(dst, committed=5)


async def test_order_is_kept_with_many_messages_in_flight(clients, pool, generation):
    dst = pool.uri("org2")
    consumer = await clients("org2", generation, auto_commit=False, read_ahead=50)
    producer = await clients("org1", generation)
    await consumer.subscribe(dst)
    sender = pool.uri("org1")
    acks = await asyncio.gather(
        *(producer.produce(proven(sender, dst, f"o{i:03d}")) for i in range(200))
    )
    assert all(ack == (None, "Message sent.") for ack in acks)
    received = []
    while len(received) < 200:
        received.append((await consumer.next_delivery()).payload["content"])
        await consumer.commit()
    assert received == sorted(received)
    assert len(set(received)) == 200
