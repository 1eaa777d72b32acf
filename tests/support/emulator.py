"""Run the App2App emulator as a real subprocess, for tests of anything that talks to it.

Usage (a pytest fixture is the usual shape; ``stop()`` is idempotent and always safe)::

    emulator = start_emulator(tmp_path / "emu")          # --port 0, SQLite
    try:
        emulator.endpoint        # "ws://127.0.0.1:PORT/api/v1"
        emulator.environment     # environment.json as a dict
        emulator.credential("org1")   # ("org1-app", "<password>")
        emulator.status()        # GET /emulator/status (await emulator.status_async()
                                 # in async tests, so that your clients keep running)
    finally:
        emulator.stop()          # SIGTERM, then SIGKILL by PID

or ``with start_emulator(...) as emulator: ...``. The process runs in its own process
group, its stdout and stderr are collected in :attr:`EmulatorProcess.output`, and a
start that fails or times out raises :class:`EmulatorStartFailed` with that output.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from airflow_provider_app2app.protocol.endpoint import basic_auth_header

REPO_ROOT = Path(__file__).resolve().parents[2]
READY = re.compile(r"App2App emulator ready on (ws://\S+)")


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")


class EmulatorStartFailed(RuntimeError):
    """The emulator did not become ready; the message includes its output."""


class EmulatorProcess:
    """A running emulator subprocess.

    :param process: the ``Popen`` object.
    :param data_dir: its ``--data-dir``.
    :param args: the full command line.
    """

    def __init__(self, process: subprocess.Popen[str], data_dir: Path, args: list[str]) -> None:
        self.process = process
        self.data_dir = data_dir
        self.args = args
        self.output: list[str] = []
        self.environment: dict[str, Any] = {}
        self.ready_endpoint: str | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            match = READY.search(line)
            if match and self.ready_endpoint is None:
                self.ready_endpoint = match.group(1)
                self._ready.set()
        self._ready.set()

    def _wait_ready(self, timeout: float) -> None:
        if not self._ready.wait(timeout) or self.ready_endpoint is None:
            self.stop()
            state = "exited" if self.process.poll() is not None else "timed out"
            raise EmulatorStartFailed(
                f"The emulator {state} before it was ready ({' '.join(self.args)}); "
                f"output:\n{self.output_text()}"
            )
        path = self.data_dir / "environment.json"
        self.environment = json.loads(path.read_text(encoding="utf-8"))
        if self.environment.get("pid") != self.pid:
            self.stop()
            raise EmulatorStartFailed(f"{path} was not written by pid {self.pid}.")

    # ------------------------------------------------------------------ accessors

    @property
    def pid(self) -> int:
        """The emulator's process ID."""
        return self.process.pid

    @property
    def endpoint(self) -> str:
        """``ws://127.0.0.1:PORT/api/v1``."""
        return str(self.environment["endpoint"])

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.environment["port"])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: what a Socket.IO client connects to."""
        return str(self.environment["socketio"]["url"])

    def output_text(self) -> str:
        """Everything the process printed so far."""
        return "\n".join(self.output)

    def credential(self, membership: str) -> tuple[str, str]:
        """``(username, password)`` of the first credential of ``membership``."""
        for cred in self.environment["credentials"]:
            if cred["membership"] == membership:
                return cred["username"], cred["password"]
        raise KeyError(f"No credential for membership {membership!r}")

    def destination(self, name: str) -> dict[str, Any]:
        """The environment.json entry of the destination called ``name``."""
        for dest in self.environment["destinations"]:
            if dest["name"] == name:
                return dict(dest)
        raise KeyError(f"No destination named {name!r}")

    def uri(self, name: str) -> str:
        """The URI of the destination called ``name``."""
        return str(self.destination(name)["uri"])

    # ----------------------------------------------------------------------- HTTP

    def get(
        self, path: str, auth: tuple[str, str] | None = None, authorization: str | None = None
    ) -> tuple[int, Any]:
        """``GET path`` on the emulator; returns ``(status, body)``, the body parsed
        when it is JSON and as text otherwise."""
        request = urllib.request.Request(self.base_url + path)
        if auth is not None:
            authorization = basic_auth_header(*auth)
        if authorization is not None:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _body(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _body(exc.read())

    def status(self) -> dict[str, Any]:
        """``GET /emulator/status``."""
        code, body = self.get("/emulator/status")
        if code != 200:
            raise RuntimeError(f"GET /emulator/status answered {code}: {body}")
        return dict(body)

    def destination_status(self, uri: str) -> dict[str, Any]:
        """The status entry of one destination."""
        for dest in self.status()["destinations"]:
            if dest["uri"] == uri:
                return dict(dest)
        raise KeyError(uri)

    def wait_for_status(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """Poll the status until ``predicate`` holds; return that status."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"Status never matched; last: {json.dumps(status)[:2000]}")
            time.sleep(0.05)

    async def status_async(self) -> dict[str, Any]:
        """``GET /emulator/status`` without blocking the running event loop."""
        return await asyncio.to_thread(self.status)

    async def wait_for_status_async(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
    ) -> dict[str, Any]:
        """:meth:`wait_for_status` for async tests: the loop keeps running (so that
        the test's own clients can send what they queued) while it polls."""
        deadline = time.monotonic() + timeout
        while True:
            status = await self.status_async()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"Status never matched; last: {json.dumps(status)[:2000]}")
            await asyncio.sleep(0.05)

    async def destination_status_async(self, uri: str) -> dict[str, Any]:
        """The status entry of one destination, without blocking the event loop."""
        for dest in (await self.status_async())["destinations"]:
            if dest["uri"] == uri:
                return dict(dest)
        raise KeyError(uri)

    async def wait_for_destination(
        self, uri: str, timeout: float = 10, **expected: Any
    ) -> dict[str, Any]:
        """Wait until the status entry of ``uri`` has the ``expected`` field values."""
        status = await self.wait_for_status_async(
            lambda s: any(
                d["uri"] == uri and all(d.get(k) == v for k, v in expected.items())
                for d in s["destinations"]
            ),
            timeout,
        )
        return next(d for d in status["destinations"] if d["uri"] == uri)

    # ------------------------------------------------------------------- stopping

    def kill(self) -> None:
        """SIGKILL the process (by PID) and reap it."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._reader.join(timeout=5)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL; idempotent.

        :return: the exit status.
        """
        if self.process.poll() is None:
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
            except ProcessLookupError:
                pass
        self._reader.join(timeout=5)
        return self.process.returncode

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def emulator_command(data_dir: Path, *extra_args: str, port: int = 0) -> list[str]:
    """The command line that :func:`start_emulator` runs."""
    return [
        sys.executable,
        "-m",
        "airflow_provider_app2app.emulator",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra_args,
    ]


def start_emulator(
    data_dir: Path | str,
    *extra_args: str,
    port: int = 0,
    timeout: float = 30,
    env: dict[str, str] | None = None,
) -> EmulatorProcess:
    """Start ``python -m airflow_provider_app2app.emulator`` and wait until it is ready.

    :param data_dir: its ``--data-dir`` (created when missing).
    :param extra_args: more command-line flags, e.g. ``"--in-memory"``.
    :param port: ``--port``; 0 (the default) picks a free one.
    :param timeout: seconds to wait for the ready line.
    :param env: extra environment variables for the process.
    :raises EmulatorStartFailed: when it exits or does not get ready in time.
    """
    data_dir = Path(data_dir)
    args = emulator_command(data_dir, *extra_args, port=port)
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    existing = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), existing]))
    process = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    emulator = EmulatorProcess(process, data_dir, args)
    emulator._wait_ready(timeout)
    return emulator
