"""Round trips through the emulator with both clients and both protocol generations.

Promises checked: managed-to-managed messages arrive with key, sender and content;
externally-managed messages are signed on the way out and arrive decrypted and
verified, in BER and DER envelopes; the emulator's dialect switches (``message``
events, JSON-string payloads and reports) and the documented produce dialect are
understood; delivery reports correlate with what was produced; order is kept;
closing a client leaves no thread or task behind.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from airflow_provider_app2app.client import ProduceRequest
from tests.integration.client.helpers import Tenant, async_client, sync_client

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_managed_round_trip_sync(tenant, generation):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    with (
        sync_client(tenant.settings("org2", generation)) as receiver,
        sync_client(tenant.settings("org1", generation, default_sender=source)) as sender,
    ):
        assert sender.generation == receiver.generation == generation
        receiver.subscribe([target])
        receipt = sender.produce(target, {"order": 42}, key="order-42")
        (report,) = sender.wait_for_delivery([receipt], timeout=10)
        message = receiver.receive(timeout=10)
    assert report.key == "order-42" and report.timestamp_ms
    assert (message.key, message.sender, message.recipient) == ("order-42", source, target)
    assert message.json() == {"order": 42}
    assert message.signature_status == "unsigned" and not message.encrypted


async def test_managed_round_trip_async_keeps_order(tenant, generation):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    async with (
        async_client(tenant.settings("org2", generation)) as receiver,
        async_client(tenant.settings("org1", generation, default_sender=source)) as sender,
    ):
        await receiver.subscribe(target)
        receipts = await sender.produce_many(
            [ProduceRequest(target, f"body {i}", f"k{i}") for i in range(60)],
            max_in_flight=16,
            wait_for_delivery=True,
        )
        keys = [(await receiver.receive(timeout=10)).key for _ in range(60)]
    assert all(r.delivered for r in receipts)
    assert keys == [f"k{i}" for i in range(60)]


def _external_pair(tenant: Tenant, generation: str):
    source, source_identity = tenant.external("org1")
    target, target_identity = tenant.external("org2")
    sender = tenant.settings("org1", generation, identities={source: source_identity})
    receiver = tenant.settings(
        "org2",
        generation,
        identities={target: target_identity},
        peer_certificates={source: source_identity.certificate},
    )
    return source, target, sender, receiver


def test_external_round_trip_is_signed_encrypted_and_verified_sync(tenant, generation):
    source, target, sender_settings, receiver_settings = _external_pair(tenant, generation)
    with sync_client(receiver_settings) as receiver, sync_client(sender_settings) as sender:
        receiver.subscribe(target)
        sender.produce(target, b"\xffbinary\x00payload", key="ext-1", sender=source)
        message = receiver.receive(timeout=10)
    assert message.content == b"\xffbinary\x00payload"
    assert message.encrypted and message.signature_status == "verified"
    assert message.sender == source


async def test_external_round_trip_in_der_envelopes_async(emulators, generation):
    tenant = emulators.tenant("--envelope-encoding", "der")
    source, target, sender_settings, receiver_settings = _external_pair(tenant, generation)
    async with async_client(receiver_settings) as receiver, async_client(sender_settings) as sender:
        await receiver.subscribe(target)
        await sender.produce(target, "text over DER", key="der-1", sender=source)
        message = await receiver.receive(timeout=10)
    assert message.text() == "text over DER"
    assert message.encrypted and message.signature_status == "verified"


async def test_external_round_trip_in_ber_envelopes_async(tenant, generation):
    source, target, sender_settings, receiver_settings = _external_pair(tenant, generation)
    async with async_client(receiver_settings) as receiver, async_client(sender_settings) as sender:
        await receiver.subscribe(target)
        await sender.produce(target, "text over BER", key="ber-1", sender=source)
        message = await receiver.receive(timeout=10)
    assert message.text() == "text over BER" and message.signature_status == "verified"


def test_signature_from_an_unknown_sender_is_marked_not_rejected(tenant, generation):
    source, source_identity = tenant.external("org1")
    target, target_identity = tenant.external("org2")
    receiver_settings = tenant.settings("org2", generation, identity=target_identity)
    sender_settings = tenant.settings("org1", generation, identity=source_identity)
    with sync_client(receiver_settings) as receiver, sync_client(sender_settings) as sender:
        receiver.subscribe(target)
        sender.produce(target, "who am i", sender=source)
        assert receiver.receive(timeout=10).signature_status == "unknown_sender"


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_message_events_and_json_payloads_are_understood(emulators, generation, flavour):
    tenant = emulators.tenant("--delivery-event", "message", "--payload-format", "json")
    source, target = tenant.managed("org1"), tenant.managed("org2")
    receiver_settings = tenant.settings("org2", generation)
    sender_settings = tenant.settings(
        "org1", generation, default_sender=source, payload_dialect="documented"
    )
    if flavour == "sync":
        with sync_client(receiver_settings) as receiver, sync_client(sender_settings) as sender:
            receiver.subscribe(target)
            receipt = sender.produce(target, {"dialect": "documented"}, key="json-1")
            (report,) = sender.wait_for_delivery(["json-1"], timeout=10)
            message = receiver.receive(timeout=10)
    else:
        async with (
            async_client(receiver_settings) as receiver,
            async_client(sender_settings) as sender,
        ):
            await receiver.subscribe(target)
            receipt = await sender.produce(target, {"dialect": "documented"}, key="json-1")
            (report,) = await sender.wait_for_delivery([receipt], timeout=10)
            message = await receiver.receive(timeout=10)
    assert receipt.delivered and report.key == "json-1"
    assert message.json() == {"dialect": "documented"} and message.key == "json-1"


def test_keyless_messages_are_confirmed_in_order(tenant, generation):
    source, target = tenant.managed("org1"), tenant.managed("org2")
    with sync_client(tenant.settings("org1", generation, default_sender=source)) as sender:
        receipts = sender.produce_many([(target, f"n{i}") for i in range(10)], max_in_flight=5)
        reports = sender.wait_for_delivery(receipts, timeout=10)
    assert [r.key for r in reports] == [None] * 10
    assert all(r.delivered for r in receipts)


def test_closing_leaves_no_thread_behind_sync(tenant, generation):
    before = {thread.ident for thread in threading.enumerate()}
    target = tenant.managed("org1")
    with sync_client(tenant.settings("org1", generation, default_sender=target)) as client:
        client.subscribe(target)
        client.produce(target, "to myself")
        client.receive(timeout=10)
    deadline = time.monotonic() + 3
    while [t for t in threading.enumerate() if t.ident not in before]:
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.05)


async def test_closing_leaves_no_task_behind_async(tenant, generation):
    target = tenant.managed("org1")
    async with async_client(tenant.settings("org1", generation, default_sender=target)) as client:
        await client.subscribe(target)
        await client.produce(target, "to myself")
        await client.receive(timeout=10)
    await asyncio.sleep(0.1)
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_long_polling_start_with_upgrade_works_too(tenant, generation):
    target = tenant.managed("org1")
    polling = tenant.settings(
        "org1", generation, default_sender=target, transports=("polling", "websocket")
    )
    with sync_client(polling) as client:
        client.subscribe(target)
        client.produce(target, "sync", key="poll-1")
        assert client.receive(timeout=10).key == "poll-1"
    async with async_client(polling) as client:
        await client.subscribe(target)
        await client.produce(target, "async", key="poll-2")
        assert (await client.receive(timeout=10)).key == "poll-2"
