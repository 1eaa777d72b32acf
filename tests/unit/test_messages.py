"""Both payload dialects, received documents and delivery reports (PROTOCOL.md §2–§3)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_app2app.protocol.errors import MalformedPayloadError
from airflow_provider_app2app.protocol.messages import (
    DeliveryReport,
    OutboundMessage,
    delivery_document,
    encode_content,
    format_payload,
    is_envelope,
    parse_delivery_report,
    parse_message_document,
    parse_produce_payload,
)

ORG1 = "kld://app2app/m/org1/e/env1/s/svc1/d/org1-managed"
ORG2 = "kld://app2app/m/org2/e/env1/s/svc1/d/org2-managed"


def test_proven_dialect_nests_from_and_to_in_headers():
    message = OutboundMessage(ORG1, ORG2, b"hello", key="k1")
    assert message.to_payload("proven") == {
        "headers": {"from": ORG1, "to": ORG2},
        "content": "hello",
    }


def test_documented_dialect_is_flat():
    message = OutboundMessage(ORG1, ORG2, b"hello", signature=b"\x01\x02")
    assert message.to_payload("documented") == {
        "from": ORG1,
        "to": ORG2,
        "content": "hello",
        "signature": b"\x01\x02",
    }


def test_binary_content_travels_as_bytes_and_text_as_str():
    assert OutboundMessage(ORG1, ORG2, b"\xff\x00").to_payload()["content"] == b"\xff\x00"
    assert OutboundMessage(ORG1, ORG2, "é".encode()).to_payload()["content"] == "é"


def test_unknown_dialect_is_refused():
    with pytest.raises(ValueError, match="proven"):
        OutboundMessage(ORG1, ORG2, b"x").to_payload("kafka")  # type: ignore[arg-type]


def test_content_encoding_of_str_bytes_and_json_objects():
    assert encode_content("héllo") == "héllo".encode()
    assert encode_content(b"\x00") == b"\x00"
    assert json.loads(encode_content({"a": [1, 2]})) == {"a": [1, 2]}


def test_content_that_json_cannot_encode_names_the_accepted_types():
    with pytest.raises(MalformedPayloadError, match="pass str, bytes or a JSON-serialisable"):
        encode_content(object())


@given(
    content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode),
    key=st.none() | st.text(min_size=1, max_size=20),
    signature=st.none() | st.binary(min_size=1, max_size=64),
    dialect=st.sampled_from(["proven", "documented"]),
    as_json=st.booleans(),
)
def test_both_dialects_round_trip_through_the_services_parser(
    content, key, signature, dialect, as_json
):
    message = OutboundMessage(ORG1, ORG2, content, key=key, signature=signature)
    payload = message.to_payload(dialect)
    if as_json:  # what a JSON-speaking client would send: bytes as Node Buffers
        payload = json.loads(
            json.dumps(
                payload,
                default=lambda b: {"type": "Buffer", "data": list(b)},
            )
        )
    assert parse_produce_payload(payload, key) == message


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (42, "must be an object"),
        ("not json", "not JSON"),
        ({"headers": {"to": ORG2}, "content": "x"}, "needs a 'from'"),
        ({"from": ORG1, "content": "x"}, "needs a 'to'"),
        ({"from": ORG1, "to": ORG2}, "has no content"),
        ({"headers": "nope", "content": "x"}, "'headers' must be an object"),
        ({"from": ORG1, "to": ORG2, "content": object()}, "expected text or bytes"),
        ({"from": 7, "to": ORG2, "content": "x"}, "got int"),
    ],
)
def test_malformed_produce_payload_says_what_is_wrong(payload, fragment):
    with pytest.raises(MalformedPayloadError, match=fragment):
        parse_produce_payload(payload)


def test_non_string_key_is_refused():
    with pytest.raises(MalformedPayloadError, match="key must be a string"):
        parse_produce_payload({"from": ORG1, "to": ORG2, "content": "x"}, key=["k"])


@given(
    content=st.binary(max_size=200),
    signature=st.none() | st.binary(min_size=1, max_size=64),
    payload_format=st.sampled_from(["object", "json"]),
)
def test_delivered_documents_parse_back_as_objects_or_json_strings(
    content, signature, payload_format
):
    document = delivery_document(ORG1, ORG2, content, signature)
    received = parse_message_document(format_payload(document, payload_format), "k", 1700)
    assert (received.sender, received.recipient, received.content) == (ORG1, ORG2, content)
    assert received.signature == signature
    assert received.key == "k"
    assert received.timestamp_ms == 1700
    assert received.signature_status == "unsigned"


def test_received_message_helpers_read_text_json_and_base64():
    received = parse_message_document(delivery_document(ORG1, ORG2, b'{"n": 1}'), None, "17")
    assert received.text() == '{"n": 1}'
    assert received.json() == {"n": 1}
    assert received.content_base64() == "eyJuIjogMX0="
    assert received.timestamp_ms == 17
    assert received.key is None


def test_binary_content_read_as_text_names_the_alternatives():
    received = parse_message_document(delivery_document(ORG1, ORG2, b"\xff"), "k", 1)
    with pytest.raises(MalformedPayloadError, match="read it as bytes or base64"):
        received.text()


def test_text_content_read_as_json_names_the_alternative():
    received = parse_message_document(delivery_document(ORG1, ORG2, b"plain"), "k", 1)
    with pytest.raises(MalformedPayloadError, match="read it as text"):
        received.json()


def test_decrypted_envelope_bytes_parse_as_a_document():
    plaintext = json.dumps(delivery_document(ORG1, ORG2, b"secret", b"\x05")).encode()
    received = parse_message_document(plaintext, "k", 1, encrypted=True)
    assert received.encrypted
    assert received.content == b"secret"
    assert received.signature == b"\x05"


def test_envelope_detection():
    assert is_envelope("-----BEGIN PKCS7-----\nMIAG\n-----END PKCS7-----\n")
    assert is_envelope(b"-----BEGIN PKCS7-----\n")
    assert not is_envelope({"headers": {}})
    assert not is_envelope('{"headers": {}}')


@pytest.mark.parametrize(
    "payload",
    [
        {"key": "k1", "timestamp": 1700000000000},
        '{"key": "k1", "timestamp": 1700000000000}',
        b'{"key": "k1", "timestamp": "1700000000000"}',
    ],
)
def test_delivery_report_as_object_or_json_string(payload):
    assert parse_delivery_report(payload) == DeliveryReport("k1", 1700000000000)


def test_delivery_report_without_key_has_none():
    assert parse_delivery_report({"key": None, "timestamp": 5}).key is None
    assert parse_delivery_report({}).timestamp_ms is None


def test_delivery_report_document_round_trips():
    report = DeliveryReport("k", 9)
    assert parse_delivery_report(format_payload(report.to_document(), "json")) == report


def test_malformed_delivery_report_is_refused():
    with pytest.raises(MalformedPayloadError, match="delivery report"):
        parse_delivery_report([1, 2])
