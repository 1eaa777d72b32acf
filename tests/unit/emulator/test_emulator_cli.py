"""Command line, authentication, the start-up summary and the loopback warning.

The parser has the documented flags and defaults; Basic auth takes the header with or
without its prefix and refuses with reasons that name the username but never the
password; environment.json carries a ready Airflow connection per credential; binding
anything but a loopback address produces a loud warning (checked without binding or
sending anything to such an address).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from pathlib import Path

import pytest

from airflow_provider_app2app.emulator.auth import AuthenticationError, authenticate
from airflow_provider_app2app.emulator.cli import build_parser, options_from_args
from airflow_provider_app2app.emulator.config import load_environment
from airflow_provider_app2app.emulator.server import (
    DEFAULT_PORT,
    Emulator,
    EmulatorOptions,
    exposure_warning,
    is_loopback,
)
from airflow_provider_app2app.emulator.summary import environment_document, human_summary


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return load_environment(tmp_path_factory.mktemp("demo"))


def test_parser_defaults():
    args = build_parser().parse_args([])
    options = options_from_args(args)
    assert (options.host, options.port, options.data_dir) == (
        "127.0.0.1",
        DEFAULT_PORT,
        Path(".app2app-emulator"),
    )
    assert DEFAULT_PORT == 8765
    assert options.config_file is None and options.in_memory is False
    assert (
        options.broker.delivery_event,
        options.broker.payload_format,
        options.broker.envelope_encoding,
        options.broker.max_content_bytes,
    ) == ("data", "object", "ber", 1 << 20)
    assert args.log_level == "info"


def test_parser_switches():
    args = build_parser().parse_args(
        [
            "--port=0",
            "--in-memory",
            "--delivery-event=message",
            "--payload-format=json",
            "--envelope-encoding=der",
            "--max-content-bytes=10",
            "--log-level=debug",
        ]
    )
    options = options_from_args(args)
    assert options.port == 0 and options.in_memory
    assert options.broker.max_content_bytes == 10
    assert options.broker.envelope_encoding == "der"


@pytest.mark.parametrize("argv", [["--port=70000"], ["--port=x"], ["--max-content-bytes=0"]])
def test_parser_rejects_bad_numbers(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_hosts_need_no_warning(host):
    assert is_loopback(host)
    assert exposure_warning(host) is None


# Non-loopback addresses: the warning is computed from the address; nothing binds to them.
@pytest.mark.parametrize("host", ["192.0.2.1", "0.0.0.0", "::", "2001:db8::1", ""])  # non-loopback
def test_non_loopback_hosts_get_a_loud_warning(host):
    assert not is_loopback(host)
    warning = exposure_warning(host)
    assert warning is not None
    assert warning.startswith("WARNING:")
    assert "NOT a loopback address" in warning
    assert "--host 127.0.0.1" in warning


def test_authenticate_with_and_without_basic_prefix(demo):
    credential = demo.credentials[0]
    token = base64.b64encode(f"{credential.username}:{credential.password}".encode()).decode()
    assert authenticate(demo, f"Basic {token}") == credential
    assert authenticate(demo, token) == credential
    assert authenticate(demo, f"basic  {token}") == credential


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "No Authorization header"),
        ("Bearer abc", "not HTTP Basic"),
        ("Basic " + base64.b64encode(b"ghost:pw").decode(), "Unknown app credential 'ghost'"),
        ("Basic " + base64.b64encode(b"org1-app:s3cret-guess").decode(), "Wrong password"),
    ],
)
def test_authentication_refusals_name_the_problem_not_the_password(demo, header, fragment):
    with pytest.raises(AuthenticationError) as refused:
        authenticate(demo, header)
    assert fragment in str(refused.value)
    assert "s3cret-guess" not in str(refused.value)
    for credential in demo.credentials:
        assert credential.password not in str(refused.value)


def test_environment_document_shape(demo, tmp_path):
    document = environment_document(
        demo, host="127.0.0.1", port=4321, data_dir=tmp_path, store="sqlite", pid=99
    )
    assert document["endpoint"] == "ws://127.0.0.1:4321/api/v1"
    assert document["socketio"] == {
        "url": "http://127.0.0.1:4321",
        "path": "socket.io",
        "namespace": "/api/v1",
    }
    cred = document["credentials"][0]
    assert set(cred) == {
        "username",
        "password",
        "membership",
        "airflow_conn_id",
        "airflow_env_var",
        "airflow_connection",
    }
    assert cred["airflow_env_var"] == "AIRFLOW_CONN_APP2APP_ORG1"
    assert cred["airflow_connection"]["conn_type"] == "app2app"
    external = [d for d in document["destinations"] if not d["kaleido_managed"]]
    assert all(d["certificate_path"] and d["private_key_path"] for d in external)
    managed = [d for d in document["destinations"] if d["kaleido_managed"]]
    assert all("certificate_path" not in d for d in managed)
    json.dumps(document)


def test_summary_has_one_export_per_credential(demo, tmp_path):
    document = environment_document(
        demo, host="127.0.0.1", port=4321, data_dir=tmp_path, store="memory", pid=1
    )
    text = human_summary(document, tmp_path / "environment.json", demo=True)
    exports = [line for line in text.splitlines() if line.strip().startswith("export ")]
    assert len(exports) == len(demo.credentials)
    assert "ws://127.0.0.1:4321/api/v1" in text
    assert "demo environment" in text


async def test_in_process_emulator_serves_and_stops(tmp_path, caplog):
    summary = io.StringIO()
    caplog.set_level(logging.INFO)
    options = EmulatorOptions(port=0, data_dir=tmp_path, in_memory=True, summary_stream=summary)
    async with Emulator(options) as emulator:
        assert emulator.port > 0
        assert emulator.endpoint == f"ws://127.0.0.1:{emulator.port}/api/v1"
        assert json.loads((tmp_path / "environment.json").read_text())["port"] == emulator.port
    assert "AIRFLOW_CONN_APP2APP_ORG1" in summary.getvalue()
    ready = [r.getMessage() for r in caplog.records if "ready on" in r.getMessage()]
    assert ready == [f"App2App emulator ready on {emulator.endpoint}"]
    for credential in emulator.environment.credentials:  # type: ignore[union-attr]
        assert credential.password not in caplog.text
