"""Matched messages become JSON XCom values: text stays text, JSON on request, bytes as
base64 with an explicit marker."""

from __future__ import annotations

import json

import pytest

from airflow_provider_app2app.protocol.errors import MalformedPayloadError
from airflow_provider_app2app.protocol.messages import ReceivedMessage
from airflow_provider_app2app.triggers.events import message_to_xcom


def message(content: bytes) -> ReceivedMessage:
    return ReceivedMessage(
        key="k",
        sender="kld://a",
        recipient="kld://b",
        content=content,
        timestamp_ms=7,
        signature_status="verified",
        encrypted=True,
    )


def test_text_content_stays_text():
    value = message_to_xcom(message("héllo".encode()), "text")
    assert value == {
        "key": "k",
        "sender": "kld://a",
        "recipient": "kld://b",
        "content": "héllo",
        "content_encoding": "text",
        "timestamp": 7,
        "signature_status": "verified",
        "encrypted": True,
    }
    assert json.loads(json.dumps(value)) == value


def test_binary_content_falls_back_to_base64_with_a_marker():
    value = message_to_xcom(message(b"\xff\x00"), "text")
    assert value["content"] == "/wA="
    assert value["content_encoding"] == "base64"


def test_json_content_is_parsed_on_request():
    value = message_to_xcom(message(b'{"a": [1]}'), "json")
    assert value["content"] == {"a": [1]}
    assert value["content_encoding"] == "json"


def test_json_format_on_text_content_is_an_error_naming_the_alternative():
    with pytest.raises(MalformedPayloadError, match="read it as text"):
        message_to_xcom(message(b"plain"), "json")


def test_base64_format_always_encodes():
    assert message_to_xcom(message(b"abc"), "base64")["content"] == "YWJj"
