"""Produce throughput: AsyncApp2AppClient vs a raw python-socketio loop, same emulator.

Both sides send N messages between two managed destinations with at most
``IN_FLIGHT`` un-acknowledged ``produce`` emits, then wait until every delivery
report has arrived; the figure is messages per second from the first emit to the
last report. The raw side is a bare ``socketio.AsyncClient`` (modern) or
``socketio_v4.AsyncClient`` (legacy) doing exactly those emits, with no typing,
correlation, ordering or error handling. Runs alternate raw/client to spread noise;
the table shows the best run of each side and the median of the
client/raw ratios of back-to-back pairs (robust to the machine's background load).

Run: ``.venv/bin/python benchmarks/bench_client_produce.py [--messages N]``; prints
one markdown table row per generation (ratio = client / raw, aim >= 0.9).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import socketio  # noqa: E402
import socketio_v4  # noqa: E402

from airflow_provider_app2app.client import AsyncApp2AppClient, ProduceRequest  # noqa: E402
from airflow_provider_app2app.protocol.endpoint import basic_auth_header  # noqa: E402
from tests.support.emulator import start_emulator  # noqa: E402

IN_FLIGHT = 64
NAMESPACE = "/api/v1"


async def raw_run(emulator, generation: str, source: str, target: str, count: int) -> float:
    username, password = emulator.credential("org1")
    sio = (
        socketio.AsyncClient(reconnection=False)
        if generation == "modern"
        else (socketio_v4.AsyncClient(reconnection=False))
    )
    reports = 0
    done = asyncio.Event()
    joined = asyncio.Event()

    async def on_report(report):
        nonlocal reports
        reports += 1
        if reports == count:
            done.set()

    async def on_connect():
        joined.set()

    sio.on("delivery-report", on_report, namespace=NAMESPACE)
    sio.on("connect", on_connect, namespace=NAMESPACE)
    await sio.connect(
        emulator.base_url,
        headers={"Authorization": basic_auth_header(username, password)},
        transports=["websocket"],
        namespaces=[NAMESPACE],
    )
    await asyncio.wait_for(joined.wait(), 10)
    window = asyncio.Semaphore(IN_FLIGHT)

    def acked(*args):
        window.release()

    started = time.perf_counter()
    for index in range(count):
        await window.acquire()
        message = {"headers": {"from": source, "to": target}, "content": f"payload {index}"}
        await sio.emit("produce", (message, f"raw-{index}"), namespace=NAMESPACE, callback=acked)
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    await sio.disconnect()
    return count / elapsed


async def client_run(emulator, generation: str, source: str, target: str, count: int) -> float:
    username, password = emulator.credential("org1")
    async with AsyncApp2AppClient(
        endpoint=emulator.endpoint,
        username=username,
        password=password,
        socketio_version=generation,
        default_sender=source,
        operation_timeout=120,
    ) as client:
        requests = [ProduceRequest(target, f"payload {i}", f"client-{i}") for i in range(count)]
        started = time.perf_counter()
        receipts = await client.produce_many(requests, max_in_flight=IN_FLIGHT)
        await client.wait_for_delivery(receipts, timeout=120)
        return count / (time.perf_counter() - started)


async def measure(emulator, generation: str, count: int, rounds: int) -> tuple[float, float, float]:
    """Best raw and client rates, and the median ratio of back-to-back pairs."""
    source = emulator.uri("org1-managed")
    target = emulator.uri("org2-managed")
    raw, ours = [], []
    await raw_run(emulator, generation, source, target, 200)  # warm-up
    await client_run(emulator, generation, source, target, 200)
    for index in range(rounds):
        # alternate which side goes first, so neither always gets the warmer slot
        if index % 2:
            ours.append(await client_run(emulator, generation, source, target, count))
            raw.append(await raw_run(emulator, generation, source, target, count))
        else:
            raw.append(await raw_run(emulator, generation, source, target, count))
            ours.append(await client_run(emulator, generation, source, target, count))
    ratios = sorted(c / r for c, r in zip(ours, raw, strict=True))
    return max(raw), max(ours), statistics.median(ratios)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        emulator = start_emulator(Path(data_dir), "--in-memory", "--log-level", "warning")
        try:
            print(
                "| benchmark | generation | messages x rounds | best raw msg/s | "
                "best client msg/s | median paired ratio |"
            )
            print("|---|---|---|---|---|---|")
            for generation in ("modern", "legacy"):
                raw, ours, ratio = asyncio.run(
                    measure(emulator, generation, args.messages, args.rounds)
                )
                print(
                    f"| produce + delivery reports, {IN_FLIGHT} in flight | {generation} | "
                    f"{args.messages} x {args.rounds} | {raw:,.0f} | {ours:,.0f} | {ratio:.2f}x |"
                )
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
