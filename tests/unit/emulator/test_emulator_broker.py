"""The broker's delivery semantics (PROTOCOL.md §4), in process with fake sockets.

Fast checks of the rules the integration tests then prove over the wire: ordered
logs, one active subscriber with standbys, read_ahead windows and counted commits,
redelivery of everything uncommitted, producer batching, ownership and signatures.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import pytest

from airflow_provider_app2app.emulator.broker import Broker, BrokerSettings, Connection
from airflow_provider_app2app.emulator.config import EnvironmentConfig, load_config
from airflow_provider_app2app.emulator.store import MemoryStore
from airflow_provider_app2app.protocol.crypto import (
    load_certificate,
    load_private_key,
    open_envelope,
    sign,
)
from airflow_provider_app2app.protocol.endpoint import TuningParameters
from tests.support.environments import write_test_config


class FakePeer:
    """Records what the broker emits to one connection."""

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Queue[tuple[Any, ...]]] = defaultdict(asyncio.Queue)
        self.order: list[str] = []

    async def emit(self, event: str, *args: object) -> None:
        self.order.append(event)
        await self.events[event].put(args)

    async def next(self, event: str = "data", timeout: float = 2) -> tuple[Any, ...]:
        return await asyncio.wait_for(self.events[event].get(), timeout)

    def pending(self, event: str = "data") -> int:
        return self.events[event].qsize()


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory) -> EnvironmentConfig:
    directory = tmp_path_factory.mktemp("broker-env")
    return load_config(write_test_config(directory, managed=3, external=1))


def uri(environment: EnvironmentConfig, name: str) -> str:
    return next(d.uri for d in environment.destinations if d.name == name)


async def started(environment: EnvironmentConfig, **settings: Any) -> Broker:
    broker = Broker(environment, MemoryStore(), BrokerSettings(**settings))
    await broker.start()
    return broker


_ids = iter(range(1_000_000))


def connect(broker: Broker, membership: str, **tuning: Any) -> tuple[Connection, FakePeer]:
    peer = FakePeer()
    credential = broker.environment.credentials_of(membership)[0]
    conn = broker.connect(
        f"c{next(_ids)}", peer, credential, TuningParameters.from_mapping(tuning), "EIO4"
    )
    return conn, peer


def message(sender: str, recipient: str, content: Any = "hi") -> dict[str, Any]:
    return {"headers": {"from": sender, "to": recipient}, "content": content}


async def test_messages_are_delivered_in_log_order_with_key_and_timestamp(environment):
    broker = await started(environment)
    src, dst = uri(environment, "org1-m000"), uri(environment, "org2-m000")
    producer, _ = connect(broker, "org1")
    consumer, peer = connect(broker, "org2")
    assert await broker.subscribe(consumer, [dst]) == (None, "Subscribed.")
    for index in range(5):
        assert await broker.produce(producer, message(src, dst, f"m{index}"), f"k{index}") == (
            None,
            "Message sent.",
        )
    for index in range(5):
        payload, key, timestamp = await peer.next()
        assert payload == {"headers": {"from": src, "to": dst}, "content": f"m{index}"}
        assert key == f"k{index}"
        assert isinstance(timestamp, int)


async def test_delivery_report_follows_the_stored_message(environment):
    broker = await started(environment, payload_format="json")
    src, dst = uri(environment, "org1-m000"), uri(environment, "org2-m001")
    producer, peer = connect(broker, "org1")
    await broker.produce(producer, message(src, dst), "key-1")
    (report,) = await peer.next("delivery-report")
    assert json.loads(report)["key"] == "key-1"


async def test_read_ahead_limits_outstanding_messages_until_commits_arrive(environment):
    broker = await started(environment)
    src, dst = uri(environment, "org1-m000"), uri(environment, "org2-m002")
    producer, _ = connect(broker, "org1")
    consumer, peer = connect(broker, "org2", auto_commit="false", read_ahead="2")
    await broker.subscribe(consumer, [dst])
    for index in range(5):
        await broker.produce(producer, message(src, dst, str(index)))
    await peer.next()
    await peer.next()
    await asyncio.sleep(0.05)
    assert peer.pending() == 0
    broker.commit(consumer)
    (payload, _, _) = await peer.next()
    assert payload["content"] == "2"
    status = next(d for d in broker.status()["destinations"] if d["uri"] == dst)
    assert (status["committed"], status["delivered"], status["log_length"]) == (1, 3, 5)


async def test_standby_takes_over_and_gets_every_uncommitted_message_again(environment):
    broker = await started(environment)
    src, dst = uri(environment, "org1-m001"), uri(environment, "org2-m000")
    producer, _ = connect(broker, "org1")
    first, first_peer = connect(broker, "org2", auto_commit="false", read_ahead="3")
    second, second_peer = connect(broker, "org2", auto_commit="false", read_ahead="3")
    await broker.subscribe(first, [dst])
    await broker.subscribe(second, [dst])
    for index in range(3):
        await broker.produce(producer, message(src, dst, str(index)))
    for _ in range(3):
        await first_peer.next()
    broker.commit(first)
    assert second_peer.pending() == 0
    broker.disconnect(first)
    contents = [(await second_peer.next())[0]["content"] for _ in range(2)]
    assert contents == ["1", "2"]


async def test_commit_with_nothing_outstanding_is_reported_not_fatal(environment):
    broker = await started(environment)
    consumer, peer = connect(broker, "org2", auto_commit="false")
    broker.commit(consumer)
    (text,) = await peer.next("exception")
    assert "no delivered message is outstanding" in text


async def test_batch_is_sealed_when_full_and_stored_in_one_write(environment):
    broker = await started(environment)
    src, dst = uri(environment, "org1-m002"), uri(environment, "org2-m001")
    producer, peer = connect(broker, "org1", batch_size="3", batch_timeout="60000")
    sends = [
        asyncio.ensure_future(broker.produce(producer, message(src, dst, str(i)))) for i in range(3)
    ]
    assert await asyncio.wait_for(asyncio.gather(*sends), 2) == [(None, "Message sent.")] * 3
    assert producer.batches == 1
    for _ in range(3):
        await peer.next("delivery-report")


async def test_partial_batch_is_sealed_after_batch_timeout(environment):
    broker = await started(environment)
    src, dst = uri(environment, "org1-m002"), uri(environment, "org2-m002")
    producer, _ = connect(broker, "org1", batch_size="10", batch_timeout="200")
    loop = asyncio.get_running_loop()
    began = loop.time()
    result = await broker.produce(producer, message(src, dst))
    assert result == (None, "Message sent.")
    assert loop.time() - began >= 0.19


async def test_reports_are_emitted_after_acks(environment):
    broker = await started(environment)
    src, dst = uri(environment, "org1-m000"), uri(environment, "org1-m001")
    producer, peer = connect(broker, "org1")
    acked: list[str] = []

    async def produce() -> None:
        await broker.produce(producer, message(src, dst))
        acked.append(f"ack after {len(peer.order)} events")

    await produce()
    await peer.next("delivery-report")
    assert acked == ["ack after 0 events"]


@pytest.mark.parametrize(
    ("sender", "recipient", "fragment"),
    [
        ("org2-m000", "org1-m000", "belongs to membership org2"),
        ("nope", "org1-m000", "does not exist"),
        ("org1-m000", "kld://app2app/m/org9/e/x/s/y/d/nope", "Recipient destination"),
    ],
)
async def test_produce_ownership_errors_name_the_fix(environment, sender, recipient, fragment):
    broker = await started(environment)
    producer, _ = connect(broker, "org1")
    src = uri(environment, sender) if sender != "nope" else "kld://nope"
    dst = uri(environment, recipient) if recipient.startswith("org") else recipient
    err, result = await broker.produce(producer, message(src, dst))
    assert result is None
    assert fragment in err


async def test_subscribe_to_another_membership_is_refused_with_own_destinations(environment):
    broker = await started(environment)
    consumer, _ = connect(broker, "org1")
    foreign = uri(environment, "org2-m000")
    err, result = await broker.subscribe(consumer, [foreign])
    assert result is None
    assert err.startswith(f"Destination {foreign} belongs to membership org2")
    assert uri(environment, "org1-m000") in err


async def test_external_sender_needs_a_valid_signature(environment):
    broker = await started(environment)
    external = next(d for d in environment.destinations if d.name == "org1-x00")
    assert external.private_key_path is not None
    key = load_private_key(external.private_key_path.read_bytes())
    dst = uri(environment, "org2-m000")
    producer, _ = connect(broker, "org1")
    err, _ = await broker.produce(producer, message(external.uri, dst, "signed?"))
    assert "needs a signature" in err
    bad = message(external.uri, dst, "signed?")
    bad["headers"]["signature"] = sign(b"something else", key)
    err, _ = await broker.produce(producer, bad)
    assert "not valid" in err
    good = message(external.uri, dst, "signed?")
    good["headers"]["signature"] = sign(b"signed?", key)
    assert await broker.produce(producer, good) == (None, "Message sent.")


async def test_external_recipient_gets_an_envelope_that_opens(environment):
    broker = await started(environment, envelope_encoding="der")
    recipient = next(d for d in environment.destinations if d.name == "org2-x00")
    assert recipient.private_key_path is not None and recipient.certificate_path is not None
    producer, _ = connect(broker, "org1")
    consumer, peer = connect(broker, "org2")
    await broker.subscribe(consumer, [recipient.uri])
    await broker.produce(producer, message(uri(environment, "org1-m000"), recipient.uri, "x"))
    pem, _, _ = await peer.next()
    plaintext = open_envelope(
        pem,
        load_private_key(recipient.private_key_path.read_bytes()),
        load_certificate(recipient.certificate_path.read_bytes()),
    )
    assert json.loads(plaintext)["content"] == "x"


async def test_restart_restores_log_and_committed_position(environment):
    store = MemoryStore()
    broker = Broker(environment, store)
    await broker.start()
    src, dst = uri(environment, "org1-m000"), uri(environment, "org2-m000")
    producer, _ = connect(broker, "org1")
    consumer, peer = connect(broker, "org2", auto_commit="false", read_ahead="5")
    await broker.subscribe(consumer, [dst])
    for index in range(4):
        await broker.produce(producer, message(src, dst, str(index)))
    for _ in range(4):
        await peer.next()
    broker.commit(consumer)
    broker.commit(consumer)
    await asyncio.sleep(0.01)
    again = Broker(environment, store)
    await again.start()
    consumer, peer = connect(again, "org2", auto_commit="false", read_ahead="5")
    await again.subscribe(consumer, [dst])
    assert [(await peer.next())[0]["content"] for _ in range(2)] == ["2", "3"]


async def test_close_stores_a_batch_that_was_still_filling(environment):
    store = MemoryStore()
    broker = Broker(environment, store)
    await broker.start()
    src, dst = uri(environment, "org1-m000"), uri(environment, "org2-m001")
    producer, _ = connect(broker, "org1", batch_size="50", batch_timeout="60000")
    pending = asyncio.ensure_future(broker.produce(producer, message(src, dst)))
    await asyncio.sleep(0.01)
    await broker.close()
    assert await pending == (None, "Message sent.")
    states = await store.open()
    assert states[dst].length == 1


def test_settings_defaults_are_the_proven_forms():
    settings = BrokerSettings()
    assert (settings.delivery_event, settings.payload_format, settings.envelope_encoding) == (
        "data",
        "object",
        "ber",
    )
    assert settings.max_content_bytes == 1024 * 1024
