"""The ``app2app-emulator`` command (also ``python -m airflow_provider_app2app.emulator``).

Starts the emulator in the foreground, prints a summary with ready-to-paste Airflow
connections, logs ``App2App emulator ready on ws://HOST:PORT/api/v1`` once it serves,
and exits with status 0 on SIGINT or SIGTERM (1 when it cannot start).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from airflow_provider_app2app.emulator.broker import DEFAULT_MAX_CONTENT_BYTES, BrokerSettings
from airflow_provider_app2app.emulator.config import EmulatorConfigError
from airflow_provider_app2app.emulator.server import (
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    DEFAULT_PORT,
    Emulator,
    EmulatorOptions,
    EmulatorStartError,
)

log = logging.getLogger("airflow_provider_app2app.emulator")

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 65535")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``app2app-emulator``."""
    parser = argparse.ArgumentParser(
        prog="app2app-emulator",
        description=(
            "A local, durable emulator of the Kaleido App2App messaging service: "
            "Socket.IO (Engine.IO 3 and 4) on /socket.io with namespace /api/v1, plus "
            "GET /api/v1/addressbook, /healthz and /emulator/status, all on one port. "
            "Without --config it serves a demo environment (memberships org1 and org2) "
            "generated once in the data directory. Credentials and connection strings "
            "are printed on start and written to <data-dir>/environment.json."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to listen on; anything but a loopback address exposes the "
        "emulator (and its printed credentials) to the network and logs a loud warning",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="TCP port for Socket.IO and REST; 0 picks a free port (the port chosen is "
        "in the ready line and in environment.json)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="directory for the demo environment (environment.toml, keys/), the SQLite "
        "database and environment.json; one emulator per directory",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML file defining memberships, credentials and destinations, instead of "
        "the demo environment (format: see the emulator section of the README, or the "
        "generated <data-dir>/environment.toml)",
    )
    parser.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default="info",
        help="logging verbosity on stderr (the ready line is always logged)",
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="keep messages and committed positions in memory instead of SQLite: faster, "
        "but everything is lost when the process ends",
    )
    parser.add_argument(
        "--delivery-event",
        choices=("data", "message"),
        default="data",
        help="event name for delivered messages: 'data' as the vendor's client receives "
        "them, or 'message' as the service's doc page describes",
    )
    parser.add_argument(
        "--payload-format",
        choices=("object", "json"),
        default="object",
        help="send delivered messages (to Kaleido-managed destinations) and delivery "
        "reports as objects, or as JSON strings (the doc page's form)",
    )
    parser.add_argument(
        "--envelope-encoding",
        choices=("ber", "der"),
        default="ber",
        help="PKCS#7 envelopes for externally-managed destinations: 'ber' as the service's "
        "node-forge library writes them (which cryptography cannot read without help), "
        "or strict 'der'",
    )
    parser.add_argument(
        "--max-content-bytes",
        type=_positive_int,
        default=DEFAULT_MAX_CONTENT_BYTES,
        help="largest message content accepted; larger messages get an ack error",
    )
    return parser


def options_from_args(args: argparse.Namespace) -> EmulatorOptions:
    """Turn parsed arguments into :class:`EmulatorOptions`."""
    return EmulatorOptions(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        config_file=args.config,
        in_memory=args.in_memory,
        broker=BrokerSettings(
            delivery_event=args.delivery_event,
            payload_format=args.payload_format,
            envelope_encoding=args.envelope_encoding,
            max_content_bytes=args.max_content_bytes,
        ),
        summary_stream=sys.stdout,
    )


_LIBRARY_LOGGERS = ("engineio", "socketio", "engineio_v3", "socketio_v4")


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``.

    The Socket.IO libraries log every packet (message contents included) at INFO, so
    they are kept at WARNING; per-request access logs appear only at debug.
    """
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in _LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if level != "debug":
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def serve(options: EmulatorOptions) -> int:
    """Run until SIGINT or SIGTERM; return the exit status."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(signum: signal.Signals) -> None:
        received.append(signum.name)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    emulator = Emulator(options)
    try:
        await emulator.start()
    except (EmulatorStartError, EmulatorConfigError) as exc:
        log.error("%s", exc)
        await emulator.stop()
        return 1
    except BaseException:
        await emulator.stop()
        raise
    await stop.wait()
    log.info("Stopping on %s.", received[0] if received else "request")
    await emulator.stop()
    log.info("Stopped.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``app2app-emulator``; returns the process exit status."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return asyncio.run(serve(options_from_args(args)))
