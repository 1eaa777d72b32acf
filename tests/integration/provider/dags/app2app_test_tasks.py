"""Test-only DAG: the produce operator's XCom, and the sensor's timeout and soft_fail."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_app2app.operators.app2app import App2AppProduceOperator
from airflow_provider_app2app.sensors.app2app import App2AppMessageSensor

ORG2_MANAGED = "kld://app2app/m/org2/e/local/s/app2app/d/org2-managed"

with DAG(
    dag_id="app2app_test_tasks",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
) as dag:
    App2AppProduceOperator(
        task_id="send_two",
        app2app_conn_id="app2app_org1",
        messages=[
            {"to": ORG2_MANAGED, "content": {"n": 1}, "key": "first-{{ run_id }}"},
            {"to": ORG2_MANAGED, "content": "second", "key": "second-{{ run_id }}"},
        ],
    )
    App2AppMessageSensor(
        task_id="wait_times_out",
        app2app_conn_id="app2app_org1",
        key="never-sent",
        timeout=3,
    )
    App2AppMessageSensor(
        task_id="wait_soft_fails",
        app2app_conn_id="app2app_org1",
        key="never-sent",
        timeout=3,
        soft_fail=True,
    )
    App2AppProduceOperator(
        task_id="send_to_unknown_destination",
        app2app_conn_id="app2app_org1",
        to="kld://app2app/m/org9/e/local/s/app2app/d/nowhere",
        content="lost",
    )
