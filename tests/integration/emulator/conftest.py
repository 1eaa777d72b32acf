"""Fixtures for the emulator's integration tests: real emulator subprocesses.

One SQLite-backed emulator serves the whole session with a config that has many
destinations; each test takes fresh ones from :class:`DestinationPool`, so tests never
see each other's messages. Tests needing other switches start their own process.
Every process is stopped by PID in a finalizer, also when a test fails.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
if str(REPO_ROOT) not in sys.path:  # the lead's root conftest does this too
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.clients import GENERATIONS, RawClient  # noqa: E402
from tests.support.emulator import EmulatorProcess, start_emulator  # noqa: E402
from tests.support.environments import DestinationPool, write_test_config  # noqa: E402

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``integration`` (they start real processes)."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def emulator_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML environment: org1 and org2, 150 managed and 6 external destinations each."""
    return write_test_config(tmp_path_factory.mktemp("emulator-config"))


@pytest.fixture(scope="session")
def emulator(
    tmp_path_factory: pytest.TempPathFactory, emulator_config: Path
) -> Iterator[EmulatorProcess]:
    """The shared emulator: SQLite store, default switches."""
    process = start_emulator(
        tmp_path_factory.mktemp("emulator-data"), "--config", str(emulator_config)
    )
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def pool(emulator: EmulatorProcess) -> DestinationPool:
    """Fresh destinations of the shared emulator."""
    return DestinationPool(emulator.environment)


@pytest.fixture
def spawn_emulator(
    tmp_path: Path, emulator_config: Path
) -> Iterator[Callable[..., EmulatorProcess]]:
    """Start extra emulators (with the test config unless ``config=None``); all are
    stopped at the end of the test."""
    started: list[EmulatorProcess] = []

    def spawn(
        *args: str, data_dir: Path | None = None, config: Path | None = emulator_config
    ) -> EmulatorProcess:
        extra = ("--config", str(config)) if config is not None else ()
        process = start_emulator(data_dir or tmp_path / f"emu{len(started)}", *extra, *args)
        started.append(process)
        return process

    try:
        yield spawn
    finally:
        for process in started:
            process.stop()


ClientFactory = Callable[..., Any]


@pytest.fixture
async def clients(emulator: EmulatorProcess) -> AsyncIterator[ClientFactory]:
    """``await clients(membership, generation="EIO4", target=emulator, **tuning)``:
    connected :class:`RawClient` objects, all disconnected at the end of the test."""
    made: list[RawClient] = []

    async def make(
        membership: str = "org1",
        generation: str = "EIO4",
        target: EmulatorProcess | None = None,
        connect: bool = True,
        **tuning: Any,
    ) -> RawClient:
        target = target or emulator
        username, password = target.credential(membership)
        client = RawClient(target.base_url, username, password, generation, tuning)  # type: ignore[arg-type]
        made.append(client)
        if connect:
            await client.connect()
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.disconnect()


@pytest.fixture(params=GENERATIONS)
def generation(request: pytest.FixtureRequest) -> str:
    """Each Engine.IO generation in turn: EIO4 (python-socketio 5), EIO3 (socketio_v4)."""
    return str(request.param)
