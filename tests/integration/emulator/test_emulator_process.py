"""Running the emulator (issue "Running it" and point 10), as users and CI run it.

``python -m airflow_provider_app2app.emulator`` and the ``app2app-emulator`` script
explain every flag; with no config it builds the demo environment once, writes
``environment.json`` and a summary with ready-to-paste Airflow connections, logs one
ready line, binds 127.0.0.1, and exits 0 on SIGINT and SIGTERM, also with clients
connected. Start-up problems (data directory in use, port taken, broken config) end
with status 1 and one clear line.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.clients import RawClient, proven
from tests.support.emulator import REPO_ROOT, EmulatorStartFailed, emulator_command

FLAGS = (
    "--host",
    "--port",
    "--data-dir",
    "--config",
    "--log-level",
    "--in-memory",
    "--delivery-event",
    "--payload-format",
    "--envelope-encoding",
    "--max-content-bytes",
)


def run(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_help_explains_every_flag_and_the_default_port():
    result = run([sys.executable, "-m", "airflow_provider_app2app.emulator", "--help"])
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for flag in FLAGS:
        assert flag in text
    assert "default: 8765" in text
    assert "default: 127.0.0.1" in text
    assert "0 picks a free port" in text


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "app2app-emulator"
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this venv")
    result = run([str(script), "--help"])
    assert result.returncode == 0 and "--delivery-event" in result.stdout


def test_demo_environment_files_and_summary(spawn_emulator, tmp_path):
    emulator = spawn_emulator(data_dir=tmp_path / "demo", config=None)
    env = emulator.environment
    assert env["endpoint"] == f"ws://127.0.0.1:{emulator.port}/api/v1"
    assert env["host"] == "127.0.0.1"
    assert [m["id"] for m in env["memberships"]] == ["org1", "org2"]
    assert [(c["username"], c["membership"]) for c in env["credentials"]] == [
        ("org1-app", "org1"),
        ("org2-app", "org2"),
    ]
    assert all(len(c["password"]) >= 16 for c in env["credentials"])
    names = {d["name"]: d for d in env["destinations"]}
    assert set(names) == {"org1-managed", "org1-external", "org2-managed", "org2-external"}
    assert names["org1-managed"]["uri"] == "kld://app2app/m/org1/e/local/s/app2app/d/org1-managed"
    assert names["org1-managed"]["kaleido_managed"] is True
    external = names["org2-external"]
    assert external["kaleido_managed"] is False
    assert Path(external["certificate_path"]).read_text().startswith("-----BEGIN CERTIFICATE")
    key = Path(external["private_key_path"])
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "demo" / "environment.json").stat().st_mode) == 0o600

    output = emulator.output_text()
    ready = [line for line in emulator.output if "App2App emulator ready on" in line]
    assert len(ready) == 1 and ready[0].endswith(env["endpoint"])
    exports = [line.strip() for line in emulator.output if line.strip().startswith("export ")]
    assert [e.split("=", 1)[0] for e in exports] == [
        "export AIRFLOW_CONN_APP2APP_ORG1",
        "export AIRFLOW_CONN_APP2APP_ORG2",
    ]
    connection = json.loads(shlex.split(exports[0].split("=", 1)[1])[0])
    assert connection == {
        "conn_type": "app2app",
        "host": env["endpoint"],
        "login": "org1-app",
        "password": env["credentials"][0]["password"],
        "extra": {"default_destination": names["org1-managed"]["uri"]},
    }
    assert env["credentials"][0]["airflow_connection"] == connection
    # passwords are printed in the summary and nowhere in the log lines
    log_lines = [line for line in emulator.output if " INFO " in line or " WARNING " in line]
    for cred in env["credentials"]:
        assert cred["password"] in output
        assert not [line for line in log_lines if cred["password"] in line]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_stops_cleanly_with_status_0_even_with_clients(
    spawn_emulator, tmp_path, signum, generation
):
    emulator = spawn_emulator("--in-memory", data_dir=tmp_path / "sig")
    username, password = emulator.credential("org1")
    client = RawClient(emulator.base_url, username, password, generation)
    await client.connect()
    polling = RawClient(emulator.base_url, username, password, generation, transports=("polling",))
    await polling.connect()
    await client.subscribe(emulator.uri("org1-m000"))
    loop = asyncio.get_running_loop()
    began = loop.time()
    os.kill(emulator.pid, signum)
    # wait in a thread: the clients live on this event loop and must answer the close
    assert await asyncio.to_thread(emulator.process.wait, 10) == 0
    assert loop.time() - began < 4
    emulator.stop()
    assert "Stopped." in emulator.output_text()
    await client.disconnect()
    await polling.disconnect()


async def test_polling_client_disconnect_is_prompt(emulator, generation):
    username, password = emulator.credential("org1")
    client = RawClient(emulator.base_url, username, password, generation, transports=("polling",))
    await client.connect()
    await asyncio.wait_for(client.disconnect(), 3)


def test_second_emulator_on_the_same_data_dir_is_refused(spawn_emulator, tmp_path):
    data_dir = tmp_path / "shared"
    first = spawn_emulator("--in-memory", data_dir=data_dir)
    with pytest.raises(EmulatorStartFailed) as failed:
        spawn_emulator("--in-memory", data_dir=data_dir)
    assert f"pid {first.pid}" in str(failed.value)
    assert "another --data-dir" in str(failed.value)


def test_port_in_use_is_reported_with_the_fix(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(emulator_command(tmp_path / "busy", "--in-memory", port=port))
    assert result.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "--port 0" in result.stderr


def test_broken_config_is_reported_in_one_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[memberships]]\nid = "org1"\n[[memberships.destinations]]\nname = "BAD"\n')
    result = run(emulator_command(tmp_path / "cfg", "--config", str(config)))
    assert result.returncode == 1
    assert "destination name 'BAD' must be 1-44 characters of [a-z0-9-_.]" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_values_are_rejected_by_argparse(tmp_path):
    result = run(emulator_command(tmp_path / "x", "--delivery-event", "push"))
    assert result.returncode == 2
    assert "invalid choice: 'push'" in result.stderr


def test_default_bind_is_loopback_without_warning(emulator):
    assert emulator.environment["host"] == "127.0.0.1"
    assert "NOT a loopback address" not in emulator.output_text()


async def test_log_level_warning_still_logs_the_ready_line(spawn_emulator, tmp_path):
    emulator = spawn_emulator("--in-memory", "--log-level", "warning", data_dir=tmp_path / "q")
    assert emulator.ready_endpoint == emulator.endpoint
    assert not [line for line in emulator.output if " INFO " in line and "ready" not in line]
    client = RawClient(emulator.base_url, *emulator.credential("org1"))
    await client.connect()
    assert await client.produce(proven(emulator.uri("org1-m000"), emulator.uri("org1-m001"), "q"))
    await client.disconnect()
