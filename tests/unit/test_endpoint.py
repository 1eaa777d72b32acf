"""Endpoint parsing: the console's URL becomes base URL, namespace, path and query (§1)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_app2app.protocol.endpoint import (
    TuningParameters,
    basic_auth_header,
    parse_basic_auth,
    parse_endpoint,
)
from airflow_provider_app2app.protocol.errors import EndpointError


def test_console_endpoint_becomes_https_base_url_and_namespace():
    endpoint = parse_endpoint("wss://u0abc-u0def-app2app.us0-aws.kaleido.io/api/v1")
    assert endpoint.base_url == "https://u0abc-u0def-app2app.us0-aws.kaleido.io"
    assert endpoint.namespace == "/api/v1"
    assert endpoint.socketio_path == "socket.io"
    assert endpoint.is_tls


def test_ws_endpoint_with_port_becomes_http_and_keeps_the_port():
    endpoint = parse_endpoint("ws://127.0.0.1:8765/api/v1")
    assert endpoint.base_url == "http://127.0.0.1:8765"
    assert not endpoint.is_tls
    assert endpoint.console_url == "ws://127.0.0.1:8765/api/v1"


def test_endpoint_without_path_uses_the_service_namespace():
    assert parse_endpoint("wss://example.test").namespace == "/api/v1"


def test_default_tuning_parameters_are_in_the_query():
    endpoint = parse_endpoint("wss://example.test/api/v1")
    assert endpoint.query == {
        "auto_commit": "true",
        "read_ahead": "1",
        "batch_size": "1",
        "batch_timeout": "250",
    }


def test_query_in_url_is_merged_and_overrides_win():
    endpoint = parse_endpoint(
        "wss://example.test/api/v1?auto_commit=false&read_ahead=5&tenant=x",
        tuning={"read_ahead": 10, "batch_size": "3"},
    )
    assert endpoint.tuning == TuningParameters(
        auto_commit=False, read_ahead=10, batch_size=3, batch_timeout=250
    )
    assert endpoint.query["tenant"] == "x"
    assert endpoint.query["read_ahead"] == "10"
    assert endpoint.connect_url.startswith("https://example.test?")
    assert "auto_commit=false" in endpoint.connect_url


def test_with_tuning_changes_only_the_named_parameters():
    endpoint = parse_endpoint("ws://h/api/v1?read_ahead=4").with_tuning({"auto_commit": False})
    assert endpoint.tuning.read_ahead == 4
    assert endpoint.query["auto_commit"] == "false"


@pytest.mark.parametrize(
    ("tuning", "fragment"),
    [
        ({"auto_commit": "maybe"}, "auto_commit='maybe' is not a boolean"),
        ({"read_ahead": 0}, "read_ahead=0 is not a positive whole number"),
        ({"batch_size": "-2"}, "batch_size='-2' is not a positive whole number"),
        ({"batch_timeout": "soon"}, "batch_timeout='soon'"),
        ({"read_ahead": True}, "read_ahead=True"),
        ({"read_ahead": 2.5}, "read_ahead=2.5"),
    ],
)
def test_bad_tuning_parameter_is_named_with_the_fix(tuning, fragment):
    with pytest.raises(EndpointError, match="use") as info:
        parse_endpoint("wss://example.test/api/v1", tuning=tuning)
    assert fragment in str(info.value)


def test_bad_tuning_in_url_query_is_refused():
    with pytest.raises(EndpointError, match="read_ahead='many'"):
        parse_endpoint("wss://example.test/api/v1?read_ahead=many")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("ftp://example.test/api/v1", "must start with wss://"),
        ("example.test/api/v1", "must start with wss://"),
        ("wss:///api/v1", "has no host name"),
        ("wss://example.test:99999/api/v1", "not a valid URL"),
        ("wss://user:secret@example.test/api/v1", "must not contain credentials"),
    ],
)
def test_bad_endpoint_gives_one_clear_error(url, fragment):
    with pytest.raises(EndpointError, match=fragment) as info:
        parse_endpoint(url)
    assert "secret" not in str(info.value)


def test_ipv6_literal_keeps_its_brackets():
    assert parse_endpoint("ws://[::1]:9000/api/v1").base_url == "http://[::1]:9000"


def test_basic_auth_header_encodes_the_credential():
    header = basic_auth_header("u0abc", "pa:ss")
    assert header == "Basic " + base64.b64encode(b"u0abc:pa:ss").decode()


_TEXT = st.characters(blacklist_categories=("Cs",))


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=":"), max_size=30
    ),
    st.text(alphabet=_TEXT, max_size=30),
)
def test_basic_auth_round_trips_with_and_without_prefix(username, password):
    header = basic_auth_header(username, password)
    assert parse_basic_auth(header) == (username, password)
    assert parse_basic_auth(header.removeprefix("Basic ")) == (username, password)


@pytest.mark.parametrize("header", [None, "", "Basic", "Basic !!!", "Bearer abc", "bm9jb2xvbg=="])
def test_unreadable_authorization_header_is_none(header):
    assert parse_basic_auth(header) is None
