"""Decoding delivered payloads: both events' shapes, envelopes (BER and DER), signatures.

Promises checked: objects and JSON strings decode alike; envelopes open with the
configured identity in either encoding (also the node-forge vector); signatures end
as verified / unknown_sender / invalid, invalid being an error unless allowed; an
envelope nobody can open is a DecryptionError naming the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_provider_app2app.client import DecryptionError, InvalidSignatureError
from airflow_provider_app2app.client.decoding import MessageDecoder
from airflow_provider_app2app.protocol.crypto import Identity, build_envelope
from airflow_provider_app2app.protocol.messages import delivery_document
from tests.unit.client.fakes import ME, MY_EXTERNAL, PEER_EXTERNAL, identity, make_settings

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "node_forge"


def sealed(
    content: bytes, *, sign_with: Identity | None, seal_for: Identity, encoding="ber"
) -> str:
    signature = sign_with.sign(content) if sign_with else None
    document = delivery_document(PEER_EXTERNAL, MY_EXTERNAL, content, signature)
    return build_envelope(json.dumps(document).encode(), seal_for.certificate, encoding)


@pytest.mark.parametrize("as_json", [False, True])
def test_managed_message_decodes_from_object_or_json_string(as_json):
    document = delivery_document("kld://peer", ME, b"hello")
    payload = json.dumps(document) if as_json else document
    message = MessageDecoder(make_settings()).decode(payload, "k1", 1700000000000)
    assert (message.key, message.sender, message.content) == ("k1", "kld://peer", b"hello")
    assert message.timestamp_ms == 1700000000000
    assert message.signature_status == "unsigned" and not message.encrypted


@pytest.mark.parametrize("encoding", ["ber", "der"])
def test_envelope_opens_and_signature_verifies(encoding):
    mine, peer = identity("me-external"), identity("peer-external")
    settings = make_settings(
        identities={MY_EXTERNAL: mine}, peer_certificates={PEER_EXTERNAL: peer.certificate}
    )
    payload = sealed(b"secret", sign_with=peer, seal_for=mine, encoding=encoding)
    message = MessageDecoder(settings).decode(payload, "k", None, [MY_EXTERNAL])
    assert message.content == b"secret"
    assert message.encrypted and message.signature_status == "verified"


def test_signature_from_a_sender_without_certificate_is_unknown_sender():
    mine, peer = identity("me-external"), identity("peer-external")
    payload = sealed(b"x", sign_with=peer, seal_for=mine)
    message = MessageDecoder(make_settings(identity=mine)).decode(payload, "k")
    assert message.signature_status == "unknown_sender"


def test_invalid_signature_raises_unless_allowed():
    mine, peer, impostor = identity("me-external"), identity("peer-external"), identity("impostor")
    payload = sealed(b"x", sign_with=impostor, seal_for=mine)
    strict = make_settings(identity=mine, peer_certificates={PEER_EXTERNAL: peer.certificate})
    with pytest.raises(InvalidSignatureError) as caught:
        MessageDecoder(strict).decode(payload, "k")
    assert caught.value.sender == PEER_EXTERNAL
    assert "allow_invalid_signatures" in str(caught.value)
    lenient = make_settings(
        identity=mine,
        peer_certificates={PEER_EXTERNAL: peer.certificate},
        allow_invalid_signatures=True,
    )
    assert MessageDecoder(lenient).decode(payload, "k").signature_status == "invalid"


def test_envelope_without_configured_key_names_the_fix():
    payload = sealed(b"x", sign_with=None, seal_for=identity("me-external"))
    with pytest.raises(DecryptionError) as caught:
        MessageDecoder(make_settings()).decode(payload, "k9", None, [MY_EXTERNAL])
    assert caught.value.key == "k9"
    assert "configure the identity" in str(caught.value)
    assert MY_EXTERNAL in str(caught.value)


def test_envelope_for_another_key_is_a_decryption_error():
    payload = sealed(b"x", sign_with=None, seal_for=identity("someone-else"))
    settings = make_settings(identity=identity("me-external"))
    with pytest.raises(DecryptionError) as caught:
        MessageDecoder(settings).decode(payload, "k")
    assert "encrypted for another key" in str(caught.value)


def test_damaged_envelope_is_a_decryption_error():
    payload = "-----BEGIN PKCS7-----\nAAAA\n-----END PKCS7-----\n"
    with pytest.raises(DecryptionError):
        MessageDecoder(make_settings(identity=identity("me-external"))).decode(payload, "k")


def test_the_matching_identity_is_found_among_several():
    mine, other = identity("me-external"), identity("other")
    settings = make_settings(identities={"kld://other": other, MY_EXTERNAL: mine})
    payload = sealed(b"found", sign_with=None, seal_for=mine)
    assert MessageDecoder(settings).decode(payload, "k", None, ["kld://other"]).content == b"found"


def test_node_forge_envelope_vector_opens_and_verifies():
    recipient = Identity.from_pem(
        (VECTORS / "recipient_key.pem").read_text(), (VECTORS / "recipient_cert.pem").read_text()
    )
    expected = json.loads((VECTORS / "plaintext.json").read_text())
    sender = expected["headers"]["from"]
    settings = make_settings(
        identity=recipient, peer_certificates={sender: (VECTORS / "sender_cert.pem").read_text()}
    )
    message = MessageDecoder(settings).decode((VECTORS / "envelope.pem").read_text(), "v")
    assert message.encrypted and message.sender == sender
    assert message.signature_status == "verified"
