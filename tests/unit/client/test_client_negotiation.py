"""Protocol-generation choice and the classification of failed connection attempts.

Promises checked: ``auto`` tries modern first, then legacy, and tries a remembered
generation first; each transport failure (DNS, refused port, TLS, HTTP status,
protocol mismatch, refusal reason) becomes its typed error naming the fix, never
the password.
"""

from __future__ import annotations

import logging
import socket
import ssl

import pytest

from airflow_provider_app2app.client import (
    App2AppConnectionError,
    App2AppTimeoutError,
    AuthenticationError,
    EndpointUnreachableError,
    ProtocolMismatchError,
    TlsError,
)
from airflow_provider_app2app.client.negotiation import (
    attempt_order,
    classify_failure,
    remember_generation,
    remembered_generation,
)
from tests.unit.client.fakes import make_settings


def chained(outer: str, inner: BaseException) -> Exception:
    """An exception whose context is ``inner``, as the Socket.IO libraries raise them."""
    try:
        try:
            raise inner
        except BaseException:
            raise ConnectionError(outer)  # noqa: B904 - implicit context on purpose
    except ConnectionError as exc:
        return exc


class BadStatus(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"Handshake status {status} -+-+- {{'server': 'x'}} -+-+- body")
        self.status_code = status


def test_auto_tries_modern_then_legacy():
    assert attempt_order(make_settings()) == ["modern", "legacy"]


def test_pinned_generation_is_the_only_attempt():
    assert attempt_order(make_settings(socketio_version="legacy")) == ["legacy"]
    assert attempt_order(make_settings(socketio_version="modern")) == ["modern"]


def test_remembered_generation_is_tried_first_and_logged_once(caplog):
    settings = make_settings()
    caplog.set_level(logging.INFO, "airflow_provider_app2app.client")
    remember_generation(settings, "legacy")
    remember_generation(settings, "legacy")
    assert remembered_generation(settings) == "legacy"
    assert attempt_order(settings) == ["legacy", "modern"]
    assert len([r for r in caplog.records if "speaks the legacy" in r.getMessage()]) == 1


def test_memory_is_per_endpoint():
    remember_generation(make_settings(), "legacy")
    other = make_settings(endpoint="ws://127.0.0.1:10/api/v1")
    assert remembered_generation(other) is None


@pytest.mark.parametrize(
    ("inner", "error_type", "phrase"),
    [
        (
            socket.gaierror(-2, "Name or service not known"),
            EndpointUnreachableError,
            "cannot be resolved",
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),
            EndpointUnreachableError,
            "Nothing accepts",
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            TlsError,
            "use a ws://",
        ),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), TlsError, "ca_bundle"),
        (TimeoutError("timed out"), App2AppTimeoutError, "connect_timeout"),
        (BadStatus(400), ProtocolMismatchError, "socketio_version"),
        (BadStatus(401), AuthenticationError, "org1-app"),
        (BadStatus(403), AuthenticationError, "username and password"),
        (BadStatus(404), EndpointUnreachableError, "HTTP 404"),
        (BadStatus(502), App2AppConnectionError, "HTTP 502"),
        (
            ValueError("OPEN packet not returned by server"),
            ProtocolMismatchError,
            "socketio_version",
        ),
        (ValueError("something odd"), App2AppConnectionError, "socketio_version"),
    ],
)
def test_transport_failure_becomes_a_typed_error_naming_the_fix(inner, error_type, phrase):
    error = classify_failure(make_settings(), "modern", chained("Connection error", inner))
    assert type(error) is error_type
    assert phrase in str(error)
    assert "s3cret-pa55word" not in str(error)


def test_polling_status_text_is_classified_too():
    error = classify_failure(
        make_settings(), "modern", ConnectionError("Unexpected status code 401 in server response")
    )
    assert isinstance(error, AuthenticationError)


def test_mismatch_message_is_short_and_names_the_generation():
    error = classify_failure(make_settings(), "legacy", chained("x", ValueError("no OPEN packet")))
    assert "legacy (Socket.IO 2 / Engine.IO 3)" in str(error)


def test_auth_refusal_names_the_user_not_the_password():
    error = classify_failure(make_settings(), "modern", None, refusal={"message": "Unauthorized"})
    assert isinstance(error, AuthenticationError)
    assert error.username == "org1-app" and error.reason == "Unauthorized"
    assert "'org1-app'" in str(error) and "s3cret-pa55word" not in str(error)


def test_other_refusal_points_at_the_endpoint_path():
    error = classify_failure(make_settings(), "modern", None, refusal="Unable to connect")
    assert type(error) is App2AppConnectionError
    assert "/api/v1" in str(error) and "endpoint path" in str(error)


def test_typed_errors_are_also_builtin_errors():
    assert issubclass(App2AppTimeoutError, TimeoutError)
    assert issubclass(EndpointUnreachableError, ConnectionError)
