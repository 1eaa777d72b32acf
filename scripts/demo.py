"""`make demo`: the request/reply example DAG, end to end, against a fresh emulator.

1. starts the App2App emulator on 127.0.0.1 with a fresh data directory (demo
   environment: org1 and org2);
2. points a temporary Airflow (``AIRFLOW_HOME`` in a temporary directory, SQLite) at it
   through ``AIRFLOW_CONN_*`` built from the emulator's ``environment.json``;
3. runs ``airflow dags test app2app_request_reply``;
4. prints the request and the reply as they were exchanged, and the emulator's view;
5. stops the emulator (by PID, also on failure) and exits 0 on success.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DAG_ID = "app2app_request_reply"
READY_TIMEOUT = 30.0


def _log(text: str) -> None:
    print(f"[demo] {text}", flush=True)


def start_emulator(data_dir: Path) -> subprocess.Popen[str]:
    """Start the emulator on a free loopback port and wait for its ready line."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_app2app.emulator",
            "--port",
            "0",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + READY_TIMEOUT
    environment = data_dir / "environment.json"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"The emulator exited early:\n{process.stderr.read() if process.stderr else ''}"
            )
        if environment.exists():
            try:
                document = json.loads(environment.read_text())
                with urllib.request.urlopen(
                    document["status_url"].replace("/emulator/status", "/healthz"), timeout=2
                ):
                    return process
            except (OSError, ValueError, KeyError):
                pass
        time.sleep(0.2)
    raise RuntimeError("The emulator did not get ready within 30 s.")


def stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 10 s, by PID."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def airflow_env(home: Path, environment: dict[str, Any]) -> dict[str, str]:
    """The environment for Airflow: temporary home, example DAGs, the connections."""
    from airflow_provider_app2app.emulator.connections import airflow_connection_env

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "example_dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        }
    )
    env.update(airflow_connection_env(environment))
    return env


def airflow(env: dict[str, str], *args: str) -> None:
    """Run an Airflow command; show its output only when it fails."""
    command = [str(Path(sys.executable).with_name("airflow")), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-5000:] + result.stderr[-5000:])
        raise RuntimeError(f"`airflow {' '.join(args)}` exited {result.returncode}.")


def exchanged(home: Path) -> dict[str, Any]:
    """The XComs of the last run: what each task sent or received."""
    with sqlite3.connect(home / "airflow.db") as db:
        run_id, state = db.execute(
            "select run_id, state from dag_run where dag_id = ? order by id desc limit 1",
            (DAG_ID,),
        ).fetchone()
        rows = db.execute(
            "select task_id, value from xcom"
            " where dag_id = ? and run_id = ? and key = 'return_value'",
            (DAG_ID, run_id),
        ).fetchall()
    values = {}
    for task_id, value in rows:
        values[task_id] = json.loads(value.decode() if isinstance(value, bytes) else value)
    return {"run_id": run_id, "state": state, "xcom": values}


def show(result: dict[str, Any], status: dict[str, Any]) -> None:
    """Print the exchange for a person."""
    xcom = result["xcom"]
    request = xcom.get("org2_receive_request", {})
    reply = xcom.get("org1_receive_reply", {})
    print()
    print(f"DAG run {result['run_id']}: {result['state']}")
    print()
    print("org1 -> org2  request")
    print(f"  key      {request.get('key')}")
    print(f"  from     {request.get('sender')}")
    print(f"  to       {request.get('recipient')}")
    print(f"  content  {json.dumps(request.get('content'))}")
    print()
    print("org2 -> org1  reply")
    print(f"  key      {reply.get('key')}")
    print(f"  from     {reply.get('sender')}")
    print(f"  to       {reply.get('recipient')}")
    print(f"  content  {json.dumps(reply.get('content'))}")
    print()
    print("emulator: destination                 log  committed")
    for destination in status["destinations"]:
        name, length, committed = (
            destination["name"],
            destination["log_length"],
            destination["committed"],
        )
        print(f"          {name:<28}{length:>4}{committed:>11}")
    print()


def main() -> int:
    """Entry point of ``make demo``."""
    workdir = Path(tempfile.mkdtemp(prefix="app2app-demo-"))
    emulator = None
    try:
        _log("starting the App2App emulator (fresh data dir, 127.0.0.1)")
        emulator = start_emulator(workdir / "emulator")
        environment = json.loads((workdir / "emulator" / "environment.json").read_text())
        _log(f"emulator ready at {environment['endpoint']}")
        env = airflow_env(workdir / "airflow", environment)
        _log("preparing a temporary Airflow (SQLite) ...")
        airflow(env, "db", "migrate")
        _log(f"running `airflow dags test {DAG_ID}` (about 20 s) ...")
        airflow(env, "dags", "test", DAG_ID)
        result = exchanged(workdir / "airflow")
        with urllib.request.urlopen(environment["status_url"], timeout=5) as response:
            status = json.load(response)
        show(result, status)
        if result["state"] != "success":
            _log("the DAG run did not succeed")
            return 1
        _log("done: the request and the reply went through the emulator")
        return 0
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        _log(f"failed: {exc}")
        return 1
    finally:
        if emulator is not None:
            stop(emulator)
            _log(f"emulator stopped (pid {emulator.pid})")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main())
