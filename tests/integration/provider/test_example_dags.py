"""The example DAGs and the provider's tasks run for real: ``airflow dags test`` against
an emulator subprocess, results read back from Airflow's metadata database."""

from __future__ import annotations

import pytest

from tests.support.airflow import AirflowHome
from tests.support.emulator import EmulatorProcess, start_emulator

REQUEST_REPLY_TASKS = [
    "org1_send_request",
    "org2_receive_request",
    "org2_send_reply",
    "org1_receive_reply",
]


def fully_committed(emulator: EmulatorProcess) -> dict[str, tuple[int, int]]:
    """Destinations whose committed position lags their log: name → (committed, length)."""
    return {
        d["name"]: (d["committed"], d["log_length"])
        for d in emulator.status()["destinations"]
        if d["committed"] != d["log_length"]
    }


def test_request_reply_dag_twice_in_a_row_exchanges_only_its_own_messages(
    airflow: AirflowHome, emulator: EmulatorProcess
):
    airflow.dags_test("app2app_request_reply")
    airflow.dags_test("app2app_request_reply")

    runs = airflow.runs("app2app_request_reply")[-2:]
    assert [state for _, state in runs] == ["success", "success"]
    for run_id, _ in runs:
        assert set(airflow.task_states("app2app_request_reply", run_id).values()) == {"success"}
        key = f"order-42-{run_id}"
        request = airflow.xcom("app2app_request_reply", run_id, "org2_receive_request")
        reply = airflow.xcom("app2app_request_reply", run_id, "org1_receive_reply")
        assert request["key"] == key
        assert request["content"] == {"request": "status of order 42", "run_id": run_id}
        assert reply["key"] == key
        assert reply["content"] == {
            "reply": "order 42 has shipped",
            "in_reply_to": "status of order 42",
        }
        assert reply["sender"].endswith("/d/org2-managed")
    assert fully_committed(emulator) == {}


def test_external_request_reply_is_signed_encrypted_and_verified(
    airflow: AirflowHome, emulator: EmulatorProcess
):
    airflow.dags_test("app2app_request_reply_external")

    run_id, state = airflow.runs("app2app_request_reply_external")[-1]
    assert state == "success"
    request = airflow.xcom("app2app_request_reply_external", run_id, "org2_receive_request")
    reply = airflow.xcom("app2app_request_reply_external", run_id, "org1_receive_reply")
    for message in (request, reply):
        assert message["encrypted"] is True
        assert message["signature_status"] == "verified"
    assert request["content"] == {"request": "confirm order 7"}
    assert reply["content"] == {"reply": "order 7 confirmed"}
    assert fully_committed(emulator) == {}


@pytest.fixture(scope="module")
def test_tasks_run(migrated_home: AirflowHome, tmp_path_factory):
    """One run of the test-only DAG against its own emulator, shared by the tests below."""
    emulator = start_emulator(tmp_path_factory.mktemp("emulator"))
    try:
        airflow = migrated_home.with_emulator(emulator.environment)
        airflow.dags_test("app2app_test_tasks", check=False)
        run_id, _ = airflow.runs("app2app_test_tasks")[-1]
        yield airflow, run_id
    finally:
        emulator.stop()


def test_produce_operator_returns_the_delivery_reports_as_xcom(test_tasks_run):
    airflow, run_id = test_tasks_run
    reports = airflow.xcom("app2app_test_tasks", run_id, "send_two")
    assert [r["key"] for r in reports] == [f"first-{run_id}", f"second-{run_id}"]
    assert all(r["recipient"].endswith("/d/org2-managed") for r in reports)
    assert all(isinstance(r["timestamp"], int) and r["timestamp"] > 0 for r in reports)


def test_sensor_times_out_and_soft_fail_skips(test_tasks_run):
    airflow, run_id = test_tasks_run
    states = airflow.task_states("app2app_test_tasks", run_id)
    assert states["wait_times_out"] == "failed"
    assert states["wait_soft_fails"] == "skipped"


def test_sending_to_an_unknown_destination_fails_the_task(test_tasks_run):
    airflow, run_id = test_tasks_run
    assert (
        airflow.task_states("app2app_test_tasks", run_id)["send_to_unknown_destination"] == "failed"
    )
