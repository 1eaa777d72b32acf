"""Durability (point 7): SIGKILL loses no acknowledged message and no committed position.

An emulator process on SQLite is sent messages (each acknowledged ``"Message sent."``)
and commits, then killed with SIGKILL and restarted on the same data directory: every
acknowledged message is still in the log, the committed position is where it was, and
a new subscriber gets exactly the uncommitted rest, in order. ``--in-memory`` serves
the same protocol and, as documented, forgets everything on restart.
"""

from __future__ import annotations

import asyncio

from tests.support.clients import proven


async def test_sigkill_then_restart_keeps_acknowledged_messages_and_commits(
    spawn_emulator, clients, tmp_path
):
    data_dir = tmp_path / "durable"
    first = spawn_emulator(data_dir=data_dir)
    dst, other = first.uri("org2-m000"), first.uri("org2-m001")
    sender = first.uri("org1-m000")
    producer = await clients("org1", "EIO4", target=first)
    legacy_producer = await clients("org1", "EIO3", target=first, batch_size=4, batch_timeout=50)
    consumer = await clients("org2", "EIO3", target=first, auto_commit=False, read_ahead=100)
    await consumer.subscribe(dst)
    for index in range(30):
        assert await producer.produce(proven(sender, dst, f"d{index}"), f"k{index}") == (
            None,
            "Message sent.",
        )
    batched = await asyncio.gather(
        *(legacy_producer.produce(proven(sender, other, f"b{i}")) for i in range(8))
    )
    assert batched == [(None, "Message sent.")] * 8
    for _ in range(30):
        await consumer.next_delivery()
    for _ in range(12):
        await consumer.commit()
    await first.wait_for_destination(dst, committed=12, committed_durable=12)

    first.kill()
    assert first.process.returncode == -9
    for client in (producer, legacy_producer, consumer):
        await client.disconnect()

    second = spawn_emulator(data_dir=data_dir)
    assert second.port != 0
    entry = await second.destination_status_async(dst)
    assert (entry["log_length"], entry["committed"], entry["delivered"]) == (30, 12, 12)
    assert (await second.destination_status_async(other))["log_length"] == 8
    returning = await clients("org2", "EIO4", target=second, auto_commit=False, read_ahead=100)
    await returning.subscribe(dst)
    redelivered = [(await returning.next_delivery()) for _ in range(18)]
    assert [d.payload["content"] for d in redelivered] == [f"d{i}" for i in range(12, 30)]
    assert [d.key for d in redelivered] == [f"k{i}" for i in range(12, 30)]
    assert await returning.no_delivery(0.2)


async def test_restart_keeps_the_demo_environment_and_its_credentials(spawn_emulator, tmp_path):
    data_dir = tmp_path / "demo"
    first = spawn_emulator(data_dir=data_dir, config=None)
    first.stop()
    second = spawn_emulator(data_dir=data_dir, config=None)
    assert second.environment["credentials"] == [
        {**c, "airflow_connection": {**c["airflow_connection"], "host": second.endpoint}}
        for c in first.environment["credentials"]
    ]
    assert [d["uri"] for d in second.environment["destinations"]] == [
        d["uri"] for d in first.environment["destinations"]
    ]


async def test_in_memory_mode_serves_the_protocol_and_forgets_on_restart(
    spawn_emulator, clients, tmp_path
):
    data_dir = tmp_path / "memory"
    first = spawn_emulator("--in-memory", data_dir=data_dir)
    assert (await first.status_async())["store"] == "memory"
    dst = first.uri("org2-m000")
    producer = await clients("org1", target=first)
    consumer = await clients("org2", target=first)
    await consumer.subscribe(dst)
    assert await producer.produce(proven(first.uri("org1-m000"), dst, "volatile")) == (
        None,
        "Message sent.",
    )
    assert (await consumer.next_delivery()).payload["content"] == "volatile"
    first.kill()
    await producer.disconnect()
    await consumer.disconnect()
    second = spawn_emulator("--in-memory", data_dir=data_dir)
    assert (await second.destination_status_async(dst))["log_length"] == 0
    assert not (data_dir / "app2app.sqlite3").exists()
