"""Running real Airflow against a real emulator: environments, ``airflow dags test``, XComs.

Every command runs with its own temporary ``AIRFLOW_HOME`` (SQLite), the connections
of the emulator's environment as ``AIRFLOW_CONN_*`` and a chosen DAGs folder; nothing
touches the user's home.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow_provider_app2app.emulator.connections import airflow_connection_env

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DAGS = REPO_ROOT / "example_dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))


@dataclass
class AirflowHome:
    """A private Airflow installation: home directory, DAGs folder, environment.

    :param home: the ``AIRFLOW_HOME``.
    :param dags_folder: the DAGs folder.
    :param env: the full environment for Airflow commands.
    """

    home: Path
    dags_folder: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def database(self) -> Path:
        """The SQLite metadata database."""
        return self.home / "airflow.db"

    def run(
        self, *args: str, timeout: float = 300, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``airflow <args>``; on failure, raise with the command's output."""
        result = subprocess.run(
            [AIRFLOW, *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"airflow {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
            )
        return result

    def with_emulator(self, environment: dict[str, Any]) -> AirflowHome:
        """The same home, with the connections of another emulator's environment."""
        env = {k: v for k, v in self.env.items() if not k.startswith("AIRFLOW_CONN_")}
        env.update(airflow_connection_env(environment))
        return AirflowHome(home=self.home, dags_folder=self.dags_folder, env=env)

    def dags_test(self, dag_id: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``airflow dags test <dag_id>`` (runs deferred triggers inline)."""
        return self.run("dags", "test", dag_id, check=check)

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Read the metadata database."""
        with sqlite3.connect(self.database) as db:
            return list(db.execute(sql, params))

    def runs(self, dag_id: str) -> list[tuple[str, str]]:
        """``(run_id, state)`` of the DAG's runs, oldest first."""
        return self.query("select run_id, state from dag_run where dag_id = ? order by id", dag_id)

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        """Task ID → state for one run."""
        rows = self.query(
            "select task_id, state from task_instance where dag_id = ? and run_id = ?",
            dag_id,
            run_id,
        )
        return dict(rows)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """One XCom value, decoded from JSON (``None`` when absent)."""
        rows = self.query(
            "select value from xcom where dag_id = ? and run_id = ? and task_id = ? and key = ?",
            dag_id,
            run_id,
            task_id,
            key,
        )
        if not rows:
            return None
        value = rows[0][0]
        if isinstance(value, bytes):
            value = value.decode()
        decoded = json.loads(value) if isinstance(value, str) else value
        return decoded


def make_airflow_home(
    home: Path,
    environment: dict[str, Any],
    *,
    dags_folder: Path = EXAMPLE_DAGS,
    extra_env: dict[str, str] | None = None,
) -> AirflowHome:
    """Create an ``AIRFLOW_HOME`` wired to the emulator ``environment``; migrate its DB."""
    home.mkdir(parents=True, exist_ok=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW_", "AIRFLOW__"))
    }
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
    )
    env.update(airflow_connection_env(environment))
    env.update(extra_env or {})
    airflow_home = AirflowHome(home=home, dags_folder=dags_folder, env=env)
    airflow_home.run("db", "migrate")
    return airflow_home


# --------------------------------------------------------------- a real Airflow stack
#
# The four long-running components (api-server, scheduler, dag-processor, triggerer),
# LocalExecutor on SQLite, bound to 127.0.0.1 only: the scheduler's and the
# triggerer's log servers (which bind 0.0.0.0) are switched off with
# ``--skip-serve-logs``. Each component runs in its own process group with its output
# in ``<AIRFLOW_HOME>/stack-logs/<component>.log``; :meth:`AirflowStack.stop` stops them
# by PID (SIGTERM to the main process, then SIGKILL to its group after a grace period).

STACK_COMPONENTS: tuple[str, ...] = ("api-server", "scheduler", "dag-processor", "triggerer")


class AirflowStackFailed(RuntimeError):
    """The stack did not start, a component died, or a wait ran out; the message carries
    the tail of every component's log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stack_env(home: AirflowHome, api_port: int) -> dict[str, str]:
    """The environment of every stack component (and of CLI commands against the stack).

    Found on Airflow 3.3.2: the execution API URL must name the api-server's port; the
    scheduler (which signs the task tokens) and the api-server (which checks them) must
    share one ``[api_auth] jwt_secret``, set explicitly here (with an empty one the
    api-server refuses to start and the other components each generate their own);
    ``simple_auth_manager_all_admins`` lets the tests call the public REST API with no
    login (it is bound to 127.0.0.1 only).
    """
    base_url = f"http://127.0.0.1:{api_port}"
    return {
        **home.env,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        "PYTHONUNBUFFERED": "1",
    }


def component_command(name: str, api_port: int) -> list[str]:
    """The ``airflow`` command line of one stack component."""
    if name == "api-server":
        return [AIRFLOW, "api-server", "--host", "127.0.0.1", "--port", str(api_port)]
    if name in ("scheduler", "triggerer"):
        return [AIRFLOW, name, "--skip-serve-logs"]
    if name == "dag-processor":
        return [AIRFLOW, "dag-processor"]
    raise ValueError(f"Unknown Airflow component {name!r}; use one of {STACK_COMPONENTS}.")


@dataclass
class AirflowComponent:
    """One running component: its ``Popen`` (own process group) and its log file."""

    name: str
    args: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The main process ID (also the process group ID)."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether the main process still runs."""
        return self.process.poll() is None

    def log_text(self) -> str:
        """Everything the component printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of its output."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def group_alive(self) -> bool:
        """Whether any process of its process group is left."""
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


@dataclass
class AirflowStack:
    """A running api-server + scheduler + dag-processor + triggerer on one ``AIRFLOW_HOME``.

    :param home: the Airflow home (SQLite database, DAGs folder).
    :param api_port: the api-server's port on 127.0.0.1.
    :param env: the environment the components run with.
    """

    home: AirflowHome
    api_port: int
    env: dict[str, str]
    components: dict[str, AirflowComponent] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.api_port}"

    # ------------------------------------------------------------- diagnostics

    def diagnostics(self, lines: int = 30) -> str:
        """The tail of every component's log, with its state."""
        parts = []
        for component in self.components.values():
            state = "running" if component.alive() else f"exited {component.process.returncode}"
            parts.append(
                f"----- {component.name} (pid {component.pid}, {state}), last {lines} lines "
                f"of {component.log_path}:\n{component.tail(lines)}"
            )
        return "\n".join(parts)

    def log_text(self, name: str) -> str:
        """All output of component ``name`` so far."""
        return self.components[name].log_text()

    def check_alive(self) -> None:
        """Raise :class:`AirflowStackFailed` when a component exited."""
        dead = [c.name for c in self.components.values() if not c.alive()]
        if dead:
            raise AirflowStackFailed(
                f"Airflow component(s) {', '.join(dead)} exited.\n{self.diagnostics()}"
            )

    # ---------------------------------------------------------------- REST API

    def api(
        self, method: str, path: str, body: Any = None, *, timeout: float = 30
    ) -> tuple[int, Any]:
        """Call the public REST API (``/api/v2/...``); returns ``(status, parsed JSON)``."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.api_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else None
            except ValueError:
                return exc.code, raw.decode(errors="replace")

    def wait_until(
        self, condition: Any, *, timeout: float, what: str, interval: float = 0.5
    ) -> Any:
        """Poll ``condition()`` until it returns something truthy; return that.

        :raises AirflowStackFailed: after ``timeout`` s or when a component died, with
            ``what`` and the tail of every component's log.
        """
        deadline = time.monotonic() + timeout
        last: Any = None
        while True:
            self.check_alive()
            last = condition()
            if last:
                return last
            if time.monotonic() > deadline:
                raise AirflowStackFailed(
                    f"Timed out after {timeout:g}s waiting for {what} (last: {last!r}).\n"
                    f"{self.diagnostics()}"
                )
            time.sleep(interval)

    def health(self) -> dict[str, Any]:
        """``GET /api/v2/monitor/health`` (empty dict while the api-server is not up)."""
        try:
            code, body = self.api("GET", "/api/v2/monitor/health", timeout=5)
        except OSError:
            return {}
        return body if code == 200 and isinstance(body, dict) else {}

    def healthy(self) -> bool:
        """Whether the database, scheduler, triggerer and dag-processor report healthy."""
        health = self.health()
        parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
        return bool(health) and all((health.get(p) or {}).get("status") == "healthy" for p in parts)

    def wait_for_dag(self, dag_id: str, timeout: float = 90) -> dict[str, Any]:
        """Wait until the dag-processor has parsed ``dag_id``; return the DAG resource."""

        def parsed() -> dict[str, Any] | None:
            code, body = self.api("GET", f"/api/v2/dags/{dag_id}")
            return body if code == 200 else None

        return dict(self.wait_until(parsed, timeout=timeout, what=f"DAG {dag_id!r} to be parsed"))

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG."""
        code, body = self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": paused})
        if code != 200:
            raise AirflowStackFailed(f"PATCH /api/v2/dags/{dag_id} answered {code}: {body}")

    def reparse(self, dag_id: str) -> None:
        """Ask the dag-processor to parse ``dag_id``'s file now (e.g. so that an unpaused
        DAG's asset watchers are registered without waiting for the next periodic parse)."""
        file_token = self.wait_for_dag(dag_id)["file_token"]
        code, body = self.api("PUT", f"/api/v2/parseDagFile/{file_token}")
        if code not in (200, 201):
            raise AirflowStackFailed(f"Re-parse request for {dag_id} answered {code}: {body}")

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> str:
        """Trigger a manual run now; returns its ``run_id``."""
        code, body = self.api(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf or {}}
        )
        if code not in (200, 201):
            raise AirflowStackFailed(f"Triggering {dag_id} answered {code}: {body}")
        return str(body["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        """One DAG run resource."""
        code, body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        if code != 200:
            raise AirflowStackFailed(f"GET dag run {dag_id}/{run_id} answered {code}: {body}")
        return dict(body)

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of ``dag_id``, oldest first."""
        code, body = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?order_by=id&limit=100")
        if code != 200:
            raise AirflowStackFailed(f"GET dag runs of {dag_id} answered {code}: {body}")
        return list(body["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        """Task ID → state for one run."""
        code, body = self.api(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        )
        if code != 200:
            raise AirflowStackFailed(f"GET task instances answered {code}: {body}")
        return {ti["task_id"]: ti["state"] for ti in body["task_instances"]}

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> str:
        """Wait until the run finished (success or failed); return its state.

        :raises AirflowStackFailed: on timeout, with the task states and the logs.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            state = self.dag_run(dag_id, run_id)["state"]
            if state in ("success", "failed"):
                return str(state)
            if time.monotonic() > deadline:
                raise AirflowStackFailed(
                    f"DAG run {dag_id}/{run_id} still {state!r} after {timeout:g}s; task "
                    f"states: {self.task_instances(dag_id, run_id)}\n{self.diagnostics()}"
                )
            time.sleep(1)

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """Every log file of one task instance (attempts and trigger logs), concatenated."""
        folder = self.home.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
        folder = folder / f"task_id={task_id}"
        return "\n".join(
            p.read_text(encoding="utf-8", errors="replace") for p in sorted(folder.rglob("*.log"))
        )

    def listening_sockets(self) -> list[tuple[str, str, int]]:
        """``(component, address, port)`` of every TCP socket a process of the stack's
        process groups listens on (read from ``/proc``; Linux only)."""
        return [
            (name, address, port)
            for name, component in self.components.items()
            for address, port in listening_sockets_of_group(component.pid)
        ]

    # ---------------------------------------------------------------- stopping

    def stop(self, grace: float = 20) -> None:
        """SIGTERM each component's main process, wait up to ``grace`` s, then SIGKILL
        whatever is left of each process group; idempotent."""
        for component in self.components.values():
            if component.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(component.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for component in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Main processes that ignored SIGTERM, and children left behind (executor
        # workers, parsing processes, trigger runners): SIGKILL the group.
        for component in self.components.values():
            if component.group_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(component.pid, signal.SIGKILL)
        for component in self.components.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                component.process.wait(timeout=10)


def start_airflow_stack(
    home: AirflowHome,
    *,
    api_port: int | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
    components: tuple[str, ...] = STACK_COMPONENTS,
) -> AirflowStack:
    """Start the components on ``home`` (already migrated) and wait until all are healthy.

    :param api_port: the api-server's port (default: a free one).
    :param extra_env: more environment variables (e.g. ``AIRFLOW__...`` settings).
    :param timeout: seconds to wait for health.
    :raises AirflowStackFailed: when a component exits or health is not reached in time
        (everything started is stopped first).
    """
    port = api_port or free_port()
    env = {**stack_env(home, port), **(extra_env or {})}
    stack = AirflowStack(home=home, api_port=port, env=env)
    logs = home.home / "stack-logs"
    logs.mkdir(parents=True, exist_ok=True)
    try:
        for name in components:
            args = component_command(name, port)
            log_path = logs / f"{name}.log"
            with log_path.open("ab") as out:
                process = subprocess.Popen(
                    args,
                    env=env,
                    cwd=home.home,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            stack.components[name] = AirflowComponent(name, args, process, log_path)
        if "api-server" in components:
            stack.wait_until(
                stack.healthy if len(components) == len(STACK_COMPONENTS) else stack.health,
                timeout=timeout,
                what="the Airflow stack to report healthy",
            )
    except BaseException:
        stack.stop()
        raise
    return stack


def process_group_members(pgid: int) -> list[int]:
    """PIDs of the processes in process group ``pgid`` (from ``/proc``; Linux only)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the process ended meanwhile
        fields = text[text.rfind(")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def _decode_address(hex_address: str) -> str:
    raw = bytes.fromhex(hex_address)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc/net/tcp6 prints the address as four host-order 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)


def listening_sockets_of_group(pgid: int) -> list[tuple[str, int]]:
    """``(address, port)`` of the TCP sockets that processes of group ``pgid`` listen on."""
    inodes: set[str] = set()
    for pid in process_group_members(pgid):
        inodes |= _socket_inodes(pid)
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.rsplit(":", 1)
                found.append((_decode_address(address), int(port, 16)))
    return found
