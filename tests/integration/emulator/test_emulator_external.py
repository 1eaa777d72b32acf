"""Externally-managed destinations (point 5): signatures in, PKCS#7 envelopes out.

A message *from* an external destination needs a valid RSA-SHA256 signature over its
content, checked with that destination's certificate; a message *to* one is delivered
as a PKCS#7 EnvelopedData PEM for its certificate whose plaintext is
``{"headers": {"from", "to", "signature"}, "content"}``. The envelope is node-forge's
BER by default (which ``cryptography`` alone refuses) and strict DER with
``--envelope-encoding der``; :func:`open_envelope` opens both.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import pkcs7

from airflow_provider_app2app.protocol.crypto import (
    decode_signature,
    load_certificate,
    load_private_key,
    open_envelope,
    sign,
    verify,
)
from tests.support.clients import documented, proven


def identity(dest: dict) -> tuple:
    key = load_private_key(Path(dest["private_key_path"]).read_bytes())
    cert = load_certificate(Path(dest["certificate_path"]).read_bytes())
    return key, cert


# Sending from a destination does not touch its log, so senders need not be fresh.
SENDER = "org1-x00"


async def test_message_from_external_destination_without_signature_is_refused(
    clients, pool, generation, emulator
):
    client = await clients("org1", generation)
    external = emulator.destination(SENDER)
    err, result = await client.produce(proven(external["uri"], pool.uri("org2"), "unsigned"))
    assert result is None
    assert "externally managed" in err
    assert "needs a signature" in err


async def test_message_with_a_wrong_signature_is_refused(clients, pool, generation, emulator):
    client = await clients("org1", generation)
    external = emulator.destination(SENDER)
    other = emulator.destination("org2-x03")
    other_key, _ = identity(other)
    target = pool.uri("org2")
    err, result = await client.produce(
        proven(external["uri"], target, "forged", sign(b"forged", other_key))
    )
    assert result is None
    assert "signature" in err and "not valid" in err
    assert (await emulator.destination_status_async(target))["log_length"] == 0


async def test_signature_over_different_content_is_refused(clients, pool, generation, emulator):
    client = await clients("org1", generation)
    external = emulator.destination(SENDER)
    key, _ = identity(external)
    err, _ = await client.produce(
        proven(external["uri"], pool.uri("org2"), "changed", sign(b"original", key))
    )
    assert "not valid" in err


@pytest.mark.parametrize(
    "encode",
    [
        lambda sig: sig,
        lambda sig: base64.b64encode(sig).decode(),
        lambda sig: {"type": "Buffer", "data": list(sig)},
    ],
    ids=["bytes", "base64", "node-buffer"],
)
async def test_validly_signed_message_is_accepted_in_every_signature_form(
    clients, pool, generation, encode, emulator
):
    client = await clients("org1", generation)
    external = emulator.destination(SENDER)
    key, _ = identity(external)
    message = documented(external["uri"], pool.uri("org2"), "signed", encode(sign(b"signed", key)))
    assert await client.produce(message, "signed") == (None, "Message sent.")


async def test_delivery_to_external_destination_is_a_ber_envelope_that_opens(
    clients, pool, generation, emulator
):
    sender = emulator.destination(SENDER)
    recipient = pool.take("org2", managed=False)
    sender_key, sender_cert = identity(sender)
    recipient_key, recipient_cert = identity(recipient)
    consumer = await clients("org2", generation)
    producer = await clients("org1", generation)
    await consumer.subscribe(recipient["uri"])
    signature = sign(b"for your eyes", sender_key)
    await producer.produce(
        proven(sender["uri"], recipient["uri"], "for your eyes", signature), "e1"
    )
    delivery = await consumer.next_delivery()
    assert delivery.key == "e1"
    pem = delivery.payload
    assert isinstance(pem, str) and pem.startswith("-----BEGIN PKCS7-----")
    assert "\r\n" in pem  # node-forge's PEM line endings
    with pytest.raises(ValueError):  # cryptography alone is DER-strict
        pkcs7.pkcs7_decrypt_pem(pem.encode(), recipient_cert, recipient_key, [])
    document = json.loads(open_envelope(pem, recipient_key, recipient_cert))
    assert document["headers"]["from"] == sender["uri"]
    assert document["headers"]["to"] == recipient["uri"]
    assert document["content"] == "for your eyes"
    verify(b"for your eyes", decode_signature(document["headers"]["signature"]), sender_cert)


async def test_der_envelope_switch_gives_strict_der(spawn_emulator, clients):
    emulator = spawn_emulator("--in-memory", "--envelope-encoding", "der")
    recipient = emulator.destination("org2-x00")
    key, cert = identity(recipient)
    consumer = await clients("org2", target=emulator)
    producer = await clients("org1", "EIO3", target=emulator)
    await consumer.subscribe(recipient["uri"])
    await producer.produce(proven(emulator.uri("org1-m000"), recipient["uri"], b"\xffbin"))
    pem = (await consumer.next_delivery()).payload
    assert "\r\n" not in pem
    strict = pkcs7.pkcs7_decrypt_pem(pem.encode(), cert, key, [])
    assert json.loads(strict)["content"] == {"type": "Buffer", "data": [255, 98, 105, 110]}
    assert "signature" not in json.loads(open_envelope(pem, key, cert))["headers"]
