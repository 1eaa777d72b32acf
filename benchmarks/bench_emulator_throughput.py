"""End-to-end throughput: the emulator (durable, SQLite) vs a bare Socket.IO relay.

One producer connection sends N messages of 1 KiB content (at most ``IN_FLIGHT``
unacknowledged ``produce`` emits); one consumer connection, subscribed with
``auto_commit=false`` and ``read_ahead=100``, emits one ``commit`` per delivered
message. The figure is messages per second from the first ``produce`` to the last
delivery (after which every commit has been sent), for:

* **emulator**: ``python -m airflow_provider_app2app.emulator`` with its default SQLite
  store (WAL, ``synchronous=FULL``): every message is fsynced before its ack, every
  committed position is stored, read_ahead windows and delivery reports apply;
* **relay**: a minimal python-socketio 5 ``AsyncServer`` on aiohttp, in its own
  process like the emulator, that forwards each ``produce`` as ``data`` to the
  subscriber, acks it, sends a delivery report and counts commits: no storage, no
  auth, no validation, no flow control.

Both use the same client code and the same Socket.IO stack (Engine.IO 4, websocket);
runs alternate between the two servers and the table shows the best of each and the
median ratio of back-to-back pairs (robust to background load on a shared machine).

Run: ``.venv/bin/python benchmarks/bench_emulator_throughput.py [--messages N]
[--rounds R]``; prints a markdown table (ratio = emulator / relay, aim >= 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.clients import RawClient, proven  # noqa: E402
from tests.support.emulator import EmulatorProcess, start_emulator  # noqa: E402

IN_FLIGHT = 100
READ_AHEAD = 100
CONTENT = "x" * 1024
NAMESPACE = "/api/v1"
RUN_TIMEOUT = 120.0


# ------------------------------------------------------------------- the bare relay


def serve_relay(port: int) -> None:
    """The bare relay server (runs in a subprocess: ``--relay PORT``)."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", namespaces=[NAMESPACE])
    subscribers: dict[str, str] = {}
    commits = 0

    @sio.on("subscribe", namespace=NAMESPACE)
    async def subscribe(sid, destinations):
        for uri in destinations:
            subscribers.setdefault(uri, sid)
        return None, "Subscribed."

    @sio.on("produce", namespace=NAMESPACE)
    async def produce(sid, message, key=None):
        timestamp = int(time.time() * 1000)
        target = subscribers.get(message["headers"]["to"])
        if target is not None:
            await sio.emit("data", (message, key, timestamp), to=target, namespace=NAMESPACE)
        await sio.emit(
            "delivery-report", {"key": key, "timestamp": timestamp}, to=sid, namespace=NAMESPACE
        )
        return None, "Message sent."

    @sio.on("commit", namespace=NAMESPACE)
    async def commit(sid, *args):
        nonlocal commits
        commits += 1

    @sio.on("disconnect", namespace=NAMESPACE)
    async def disconnect(sid, *args):
        for uri, owner in list(subscribers.items()):
            if owner == sid:
                del subscribers[uri]

    app = web.Application()
    sio.attach(app)
    print(f"relay ready on {port}", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Relay:
    """The relay subprocess."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--relay", str(self.port)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if "ready" not in line:
            self.stop()
            raise RuntimeError(f"the relay did not start: {line!r}")
        self.base_url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


# ------------------------------------------------------------------- one measured run


async def run_once(
    base_url: str, credentials: dict[str, tuple[str, str]], sender: str, target: str, count: int
) -> float:
    """Messages per second for ``count`` messages, produce -> deliver -> commit."""
    consumer = RawClient(
        base_url,
        *credentials["org2"],
        tuning={"auto_commit": "false", "read_ahead": str(READ_AHEAD)},
    )
    producer = RawClient(base_url, *credentials["org1"])
    await consumer.connect()
    await producer.connect()
    try:
        assert await consumer.subscribe(target) == (None, "Subscribed.")
        window = asyncio.Semaphore(IN_FLIGHT)
        received = 0
        done = asyncio.Event()

        async def on_data(*args: object) -> None:
            nonlocal received
            received += 1
            await consumer.sio.emit("commit", namespace=NAMESPACE)
            if received == count:
                done.set()

        consumer.sio.on("data", on_data, namespace=NAMESPACE)

        def acked(*args: object) -> None:
            window.release()

        started = time.perf_counter()
        for index in range(count):
            await window.acquire()
            await producer.sio.emit(
                "produce",
                (proven(sender, target, CONTENT), f"k{index}"),
                namespace=NAMESPACE,
                callback=acked,
            )
        await asyncio.wait_for(done.wait(), RUN_TIMEOUT)
        return count / (time.perf_counter() - started)
    finally:
        await producer.disconnect()
        await consumer.disconnect()


async def measure(
    emulator: EmulatorProcess, relay: Relay, count: int, rounds: int
) -> tuple[float, float, float]:
    """Best emulator and relay rates and the median emulator/relay ratio of pairs."""
    credentials = {m: emulator.credential(m) for m in ("org1", "org2")}
    sender = emulator.uri("org1-m000")
    targets = iter(emulator.uri(f"org2-m{i:03d}") for i in range(1, 2 * rounds + 3))
    # warm-up (fresh destinations each run, so no run sees another's backlog)
    await run_once(emulator.base_url, credentials, sender, next(targets), 200)
    await run_once(relay.base_url, credentials, sender, "relay-warmup", 200)
    ours: list[float] = []
    bare: list[float] = []
    for index in range(rounds):
        runs = [
            ("emulator", emulator.base_url, next(targets)),
            ("relay", relay.base_url, f"relay-{index}"),
        ]
        for name, url, target in runs if index % 2 == 0 else reversed(runs):
            rate = await run_once(url, credentials, sender, target, count)
            (ours if name == "emulator" else bare).append(rate)
    ratios = sorted(o / b for o, b in zip(ours, bare, strict=True))
    return max(ours), max(bare), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="run the emulator with --in-memory instead (to see what durability costs)",
    )
    parser.add_argument("--relay", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.relay is not None:
        serve_relay(args.relay)
        return
    from tests.support.environments import write_test_config

    with tempfile.TemporaryDirectory() as scratch:
        config = write_test_config(
            Path(scratch) / "config", managed=2 * args.rounds + 4, external=0
        )
        store = ("--in-memory",) if args.in_memory else ()
        emulator = start_emulator(
            Path(scratch) / "data", "--config", str(config), "--log-level", "warning", *store
        )
        relay = Relay()
        try:
            best_ours, best_bare, ratio = asyncio.run(
                measure(emulator, relay, args.messages, args.rounds)
            )
        finally:
            relay.stop()
            emulator.stop()
    kind = "in memory" if args.in_memory else "SQLite, durable"
    print(
        f"| benchmark | messages x rounds | emulator ({kind}) best msg/s | "
        "bare relay best msg/s | median paired ratio |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| produce -> deliver -> commit, 1 KiB, read_ahead {READ_AHEAD}, "
        f"{IN_FLIGHT} in flight | {args.messages} x {args.rounds} | {best_ours:,.0f} | "
        f"{best_bare:,.0f} | {ratio:.2f}x |"
    )


if __name__ == "__main__":
    main()
