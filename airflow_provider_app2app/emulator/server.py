"""The running emulator: store, broker, Socket.IO and REST on one aiohttp port.

:class:`Emulator` assembles the parts, binds the socket, writes ``environment.json``
and logs the ready line; it is also what in-process tests start::

    async with Emulator(EmulatorOptions(port=0, data_dir=tmp, in_memory=True)) as emu:
        ...  # emu.endpoint, emu.port, emu.document

It binds 127.0.0.1 unless told otherwise and warns loudly when the address is not a
loopback one: the demo credentials are printed in clear and anyone who can reach the
port could use them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from aiohttp import web

from airflow_provider_app2app import __version__
from airflow_provider_app2app.emulator.broker import Broker, BrokerSettings
from airflow_provider_app2app.emulator.config import EnvironmentConfig, load_environment
from airflow_provider_app2app.emulator.rest import RestEndpoints
from airflow_provider_app2app.emulator.store import DATABASE_NAME, MemoryStore, SqliteStore, Store
from airflow_provider_app2app.emulator.summary import (
    environment_document,
    human_summary,
    write_environment_file,
)
from airflow_provider_app2app.emulator.transport import SocketTransport

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("airflow_provider_app2app.emulator")
ready_log = logging.getLogger("airflow_provider_app2app.emulator.ready")
"""Logs the ready line and the exposure warning; always at INFO, whatever --log-level."""
ready_log.setLevel(logging.INFO)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_DATA_DIR = Path(".app2app-emulator")
LOCK_FILE = ".lock"
SHUTDOWN_TIMEOUT = 3.0
"""Seconds a graceful stop waits for in-flight HTTP requests."""


class EmulatorStartError(RuntimeError):
    """The emulator cannot start; the message says why and what to do."""


@dataclass(frozen=True)
class EmulatorOptions:
    """How to run the emulator (the command-line flags).

    :param host: the address to bind; loopback unless you mean to expose it.
    :param port: the TCP port; ``0`` picks a free one.
    :param data_dir: where the demo environment, the database and environment.json live.
    :param config_file: a TOML environment to serve instead of the demo environment.
    :param in_memory: keep messages in memory instead of SQLite (fast, not durable).
    :param broker: the service's behaviour switches.
    :param summary_stream: where to print the human summary, or ``None`` for nowhere.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    config_file: Path | None = None
    in_memory: bool = False
    broker: BrokerSettings = field(default_factory=BrokerSettings)
    summary_stream: IO[str] | None = None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a literal address or a name) only reaches this machine.

    Names are resolved locally (no traffic is sent to the address); an empty host
    means every interface and is not loopback.
    """
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def exposure_warning(host: str) -> str | None:
    """The loud warning for a non-loopback ``host``, or ``None`` when it is loopback."""
    if is_loopback(host):
        return None
    shown = host or "every interface"
    return (
        f"WARNING: the App2App emulator listens on {shown}, which is NOT a loopback "
        f"address. Anyone who can reach this port can connect with the credentials in "
        f"environment.json and read or send messages. The emulator has no TLS and is "
        f"meant for one machine: use --host 127.0.0.1 unless you really mean this."
    )


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, _, _, _, address = infos[0]
        return socket.create_server((address[0], port), family=family)
    except OSError as exc:
        raise EmulatorStartError(
            f"Cannot listen on {host or '*'}:{port} ({exc.strerror or exc}); pick another "
            f"--port, or --port 0 for a free one."
        ) from None


def _client_host(bound: str) -> str:
    address = ipaddress.ip_address(bound.split("%")[0])
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return f"[{bound}]" if address.version == 6 else bound


def _lock(data_dir: Path) -> IO[str] | None:
    if fcntl is None:  # pragma: no cover - not POSIX
        return None
    handle = (data_dir / LOCK_FILE).open("a+", encoding="ascii")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise EmulatorStartError(
            f"Another emulator (pid {holder}) is using the data directory {data_dir}; "
            f"stop it or pass another --data-dir."
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


class Emulator:
    """A running App2App emulator (see the module docstring).

    :param options: the run options.
    """

    def __init__(self, options: EmulatorOptions) -> None:
        self.options = options
        self.environment: EnvironmentConfig | None = None
        self.broker: Broker | None = None
        self.document: dict[str, Any] = {}
        self.port = 0
        self.endpoint = ""
        self.started_at = datetime.now(timezone.utc)
        self._runner: web.AppRunner | None = None
        self._transport: SocketTransport | None = None
        self._lock: IO[str] | None = None

    @property
    def environment_file(self) -> Path:
        """Where ``environment.json`` is written."""
        return self.options.data_dir / "environment.json"

    def _server_info(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "endpoint": self.endpoint,
            "started_at": self.started_at.isoformat(),
        }

    async def start(self) -> None:
        """Load the environment, open the store, bind and serve; then log the ready line.

        :raises EmulatorStartError: when the data directory is in use or the port is not free.
        :raises EmulatorConfigError: when the environment configuration is not usable.
        """
        options = self.options
        data_dir = options.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock(data_dir)
        self.environment = load_environment(data_dir, options.config_file)
        store: Store = MemoryStore() if options.in_memory else SqliteStore(data_dir / DATABASE_NAME)
        self.broker = Broker(self.environment, store, options.broker)
        await self.broker.start()
        sock = _bind(options.host, options.port)
        max_message = max(8 * options.broker.max_content_bytes, 1 << 20) + (1 << 16)
        app = web.Application(client_max_size=max_message)
        self._transport = SocketTransport(self.broker, max_message_bytes=max_message)
        self._transport.attach(app)
        RestEndpoints(self.broker, self._server_info).attach(app)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()
        bound, self.port = sock.getsockname()[:2]
        host = _client_host(bound)
        self.document = environment_document(
            self.environment,
            host=host,
            port=self.port,
            data_dir=data_dir,
            store=store.kind,
            pid=os.getpid(),
        )
        self.endpoint = self.document["endpoint"]
        path = write_environment_file(data_dir, self.document)
        if options.summary_stream is not None:
            summary = human_summary(self.document, path, self.environment.demo)
            print(summary, file=options.summary_stream, flush=True)
        warning = exposure_warning(options.host)
        if warning:
            ready_log.warning(warning)
        ready_log.info("App2App emulator ready on %s", self.endpoint)

    async def stop(self) -> None:
        """Disconnect every client, stop serving, finish writes and close the store."""
        if self._transport is not None:
            log.debug("Closing client connections.")
            await self._transport.close()
            self._transport = None
        if self._runner is not None:
            log.debug("Stopping the HTTP server.")
            await self._runner.cleanup()
            self._runner = None
        if self.broker is not None:
            log.debug("Closing the broker and the store.")
            await self.broker.close()
            self.broker = None
        if self._lock is not None:
            with contextlib.suppress(OSError):
                self._lock.close()
            self._lock = None

    async def __aenter__(self) -> Emulator:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


__all__ = [
    "DEFAULT_DATA_DIR",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "Emulator",
    "EmulatorOptions",
    "EmulatorStartError",
    "exposure_warning",
    "is_loopback",
]
