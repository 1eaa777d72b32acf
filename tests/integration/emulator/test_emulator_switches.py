"""Behaviour switches (point 3): ``--delivery-event message`` and ``--payload-format json``.

The defaults (``data``, objects) are the proven forms and are covered everywhere else;
here one emulator runs with the documented forms: messages arrive as ``message`` events
whose payload is the document as a JSON string, and delivery reports are JSON strings.
"""

from __future__ import annotations

import json

import pytest

from tests.support.clients import proven


@pytest.fixture(scope="module")
def documented_emulator(tmp_path_factory, emulator_config):
    from tests.support.emulator import start_emulator

    process = start_emulator(
        tmp_path_factory.mktemp("documented"),
        "--config",
        str(emulator_config),
        "--in-memory",
        "--delivery-event",
        "message",
        "--payload-format",
        "json",
    )
    try:
        yield process
    finally:
        process.stop()


async def test_documented_forms_message_event_and_json_strings(
    documented_emulator, clients, generation
):
    sender = documented_emulator.uri("org1-m000")
    receiver = documented_emulator.uri(f"org2-m00{0 if generation == 'EIO4' else 1}")
    consumer = await clients("org2", generation, target=documented_emulator)
    producer = await clients("org1", generation, target=documented_emulator)
    await consumer.subscribe(receiver)
    await producer.produce(proven(sender, receiver, "documented"), "doc-1")
    delivery = await consumer.next_delivery()
    assert delivery.event == "message"
    assert isinstance(delivery.payload, str)
    assert json.loads(delivery.payload) == {
        "headers": {"from": sender, "to": receiver},
        "content": "documented",
    }
    report = await producer.next_report()
    assert isinstance(report, str)
    assert json.loads(report)["key"] == "doc-1"


async def test_json_payload_carries_binary_content_as_node_buffer(documented_emulator, clients):
    sender = documented_emulator.uri("org1-m001")
    receiver = documented_emulator.uri("org2-m002")
    consumer = await clients("org2", target=documented_emulator)
    producer = await clients("org1", target=documented_emulator)
    await consumer.subscribe(receiver)
    await producer.produce(proven(sender, receiver, b"\xff\xfe"))
    document = json.loads((await consumer.next_delivery()).payload)
    assert document["content"] == {"type": "Buffer", "data": [255, 254]}


async def test_status_reports_the_switches(documented_emulator):
    settings = (await documented_emulator.status_async())["settings"]
    assert settings == {
        "delivery_event": "message",
        "payload_format": "json",
        "envelope_encoding": "ber",
        "max_content_bytes": 1024 * 1024,
    }
    assert (await documented_emulator.status_async())["store"] == "memory"
