"""Fixtures for the provider's integration tests: real emulators and real Airflow.

One migrated ``AIRFLOW_HOME`` (SQLite) serves the module; each test gets a fresh
emulator (demo environment) so that no test sees another's messages. Every emulator is
stopped by PID in a finalizer, also when a test fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.airflow import EXAMPLE_DAGS, AirflowHome, make_airflow_home
from tests.support.emulator import EmulatorProcess, start_emulator

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``integration`` (they start real processes)."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A fresh emulator with the demo environment (SQLite store)."""
    process = start_emulator(tmp_path / "emulator")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def dags_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example DAGs plus the test-only DAGs, in one folder."""
    folder = tmp_path_factory.mktemp("dags")
    for source in [*EXAMPLE_DAGS.glob("*.py"), *(HERE / "dags").glob("*.py")]:
        shutil.copy(source, folder / source.name)
    return folder


@pytest.fixture(scope="session")
def migrated_home(tmp_path_factory: pytest.TempPathFactory, dags_folder: Path) -> AirflowHome:
    """An ``AIRFLOW_HOME`` with a migrated SQLite database (no connections yet)."""
    environment = {"destinations": [], "credentials": []}
    return make_airflow_home(
        tmp_path_factory.mktemp("airflow-home"), environment, dags_folder=dags_folder
    )


@pytest.fixture
def airflow(migrated_home: AirflowHome, emulator: EmulatorProcess) -> AirflowHome:
    """Airflow wired to this test's emulator."""
    return migrated_home.with_emulator(emulator.environment)
