"""Fixtures for the end-to-end tests: one emulator and one real Airflow stack per module.

The stack is api-server + scheduler + dag-processor + triggerer (LocalExecutor, SQLite,
everything on 127.0.0.1) with the example DAGs, wired to the emulator's demo
environment through ``AIRFLOW_CONN_*``. It takes about 20 s to become healthy on a
2-core machine, so the tests of a module share it; every process (emulator and the four
Airflow components, each in its own process group) is stopped by PID in a finalizer,
also when a test fails.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.observe import StatusRecorder
from tests.support.airflow import (
    EXAMPLE_DAGS,
    AirflowStack,
    make_airflow_home,
    start_airflow_stack,
)
from tests.support.emulator import EmulatorProcess, start_emulator

HERE = Path(__file__).resolve().parent

# Settings of the shared stack beyond tests.support.airflow.stack_env (which binds to
# 127.0.0.1, selects LocalExecutor, parallelism 4, and shares the JWT secret).
E2E_AIRFLOW_ENV = {
    # The task supervisor notices a deferring task's exit only on its next wake-up,
    # up to `min_heartbeat_interval` (5 s) later; meanwhile the executor's "success"
    # for that try is not reported. Our sensors' triggers fire within 1-3 s (the
    # message is already there), the scheduler re-queues the task, and when the stale
    # "success" then arrives Airflow 3.3.2 marks the re-queued task FAILED ("state
    # mismatch": apache/airflow#67287, fixed upstream by #68741 but not in 3.3.2; the
    # RUNNING variant is #72716). A 1 s interval shrinks that window below the
    # triggerer's reaction time; the tests still fail loudly if the race happens.
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test of this directory ``integration`` (they start real processes)."""
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator (demo environment, SQLite store) for the module."""
    process = start_emulator(tmp_path_factory.mktemp("emulator"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def stack(
    emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    """The four Airflow components on a fresh ``AIRFLOW_HOME`` with the example DAGs
    (all paused at creation, Airflow's default), healthy."""
    dags = tmp_path_factory.mktemp("dags")
    for source in EXAMPLE_DAGS.glob("*.py"):
        shutil.copy(source, dags / source.name)
    home = make_airflow_home(
        tmp_path_factory.mktemp("airflow-home"), emulator.environment, dags_folder=dags
    )
    airflow = start_airflow_stack(home, extra_env=E2E_AIRFLOW_ENV)
    try:
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture
def status_recorder(emulator: EmulatorProcess) -> Iterator[StatusRecorder]:
    """A :class:`StatusRecorder` running for the whole test."""
    with StatusRecorder(emulator) as recorder:
        yield recorder
