"""Running real Airflow against a real emulator: environments, ``airflow dags test``, XComs.

Every command runs with its own temporary ``AIRFLOW_HOME`` (SQLite), the connections
of the emulator's environment as ``AIRFLOW_CONN_*`` and a chosen DAGs folder; nothing
touches the user's home.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
