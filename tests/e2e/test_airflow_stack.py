"""End to end: the example DAGs on a real Airflow stack against a real emulator.

api-server, scheduler, dag-processor and triggerer (LocalExecutor, SQLite) run as
separate processes, exactly as in a deployment; deferrable sensors wait in the real
triggerer, which on Airflow 3.3 runs the message trigger through the shared-stream
manager in ack mode (one subscription per destination, commits gated on Airflow having
persisted the trigger event). The tests share one stack (see ``conftest.py``) and run in
file order: the first runs the request/reply DAG while the event-driven DAG is still
paused (its watcher would share org2's stream and claim the ``order-*`` request, see
``test_event_driven_dag_runs_once_per_inbound_message``).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from airflow_provider_app2app.client import App2AppClient
from tests.e2e.observe import StatusRecorder, subscriptions
from tests.support.airflow import AirflowStack, listening_sockets_of_group
from tests.support.emulator import EmulatorProcess

REQUEST_REPLY = "app2app_request_reply"
EVENT_DRIVEN = "app2app_event_driven"
RUN_TIMEOUT = 180
COMMIT_TIMEOUT = 30


def uncommitted(emulator: EmulatorProcess) -> dict[str, tuple[int, int]]:
    """Destinations whose committed position lags their log: name → (committed, length)."""
    return {
        d["name"]: (d["committed"], d["log_length"])
        for d in emulator.status()["destinations"]
        if d["committed"] != d["log_length"]
    }


def wait_fully_committed(emulator: EmulatorProcess, stack: AirflowStack) -> float:
    """Wait (bounded) until every destination is fully committed; return the seconds
    it took. The commit after a claim is persistence-gated, so it may lag a little."""
    started = time.monotonic()
    deadline = started + COMMIT_TIMEOUT
    while behind := uncommitted(emulator):
        stack.check_alive()
        assert time.monotonic() < deadline, (
            f"Not fully committed after {COMMIT_TIMEOUT}s: name -> (committed, log length) "
            f"{behind}\n{stack.diagnostics()}"
        )
        time.sleep(0.25)
    return time.monotonic() - started


def wait_for(condition: Any, timeout: float, what: str, stack: AirflowStack) -> Any:
    """Poll ``condition()`` until truthy (the stack's components must stay alive)."""
    return stack.wait_until(condition, timeout=timeout, what=what, interval=0.25)


def assert_no_state_mismatch(stack: AirflowStack) -> None:
    """Fail with a precise message when Airflow's defer/resume race struck (see conftest)."""
    lines = [
        line
        for line in stack.log_text("scheduler").splitlines()
        if "but the task instance's state attribute is" in line
    ]
    assert not lines, (
        "Airflow's scheduler failed a resumed deferred task because of a stale executor "
        "'success' (apache/airflow#67287/#72716; not a provider bug):\n" + "\n".join(lines)
    )


# ----------------------------------------------------------------- request/reply


def test_request_reply_twice_through_real_triggerer(
    stack: AirflowStack, emulator: EmulatorProcess, status_recorder: StatusRecorder
):
    assert stack.wait_for_dag(EVENT_DRIVEN)["is_paused"], "the watcher must not run yet"
    stack.wait_for_dag(REQUEST_REPLY)
    stack.set_paused(REQUEST_REPLY, False)
    org1 = emulator.uri("org1-managed")
    org2 = emulator.uri("org2-managed")

    runs: list[tuple[str, list[dict[str, str]], float]] = []
    commit_lags = []
    for _ in range(2):
        mark = len(emulator.output)
        started = time.monotonic()
        run_id = stack.trigger(REQUEST_REPLY)
        state = stack.wait_for_run(REQUEST_REPLY, run_id, timeout=RUN_TIMEOUT)
        elapsed = time.monotonic() - started
        assert_no_state_mismatch(stack)
        assert state == "success", (
            f"run {run_id} ended {state}: {stack.task_instances(REQUEST_REPLY, run_id)}\n"
            f"{stack.diagnostics()}"
        )
        # No backlog left behind for the next run: everything this run delivered is
        # committed once Airflow persisted the trigger events.
        commit_lags.append(wait_fully_committed(emulator, stack))
        runs.append((run_id, subscriptions(emulator.output[mark:]), elapsed))

    # Each run saw its own request and reply, never the other run's.
    assert runs[0][0] != runs[1][0]
    for run_id, _, _ in runs:
        assert set(stack.task_instances(REQUEST_REPLY, run_id).values()) == {"success"}
        key = f"order-42-{run_id}"
        request = stack.home.xcom(REQUEST_REPLY, run_id, "org2_receive_request")
        reply = stack.home.xcom(REQUEST_REPLY, run_id, "org1_receive_reply")
        assert request["key"] == key
        assert request["sender"] == org1
        assert request["content"] == {"request": "status of order 42", "run_id": run_id}
        assert reply["key"] == key
        assert reply["sender"] == org2
        assert reply["content"]["reply"] == "order 42 has shipped"
        # The sensors waited in the triggerer on the shared stream: the shared path logs
        # "matched." where the standalone run() logs "matched; committing it."
        for task_id in ("org2_receive_request", "org1_receive_reply"):
            log = stack.task_log(REQUEST_REPLY, run_id, task_id)
            assert f"Message '{key}' from" in log and "matched." in log, log[-3000:]
            assert "matched; committing it" not in log, log[-3000:]

    # One subscribing connection per destination: per run, the emulator logged exactly
    # one subscription to org2's destination (request sensor) and one to org1's (reply
    # sensor), each the active consumer; no standby ever, and the status never showed
    # two subscribers on one destination.
    for run_id, subscribed, _ in runs:
        per_destination = Counter(s["uri"] for s in subscribed)
        assert per_destination == {org2: 1, org1: 1}, (run_id, subscribed)
        assert {s["role"] for s in subscribed} == {"active"}, (run_id, subscribed)
    assert status_recorder.samples > 10
    assert max(status_recorder.peak.values()) <= 1, status_recorder.peak

    # Afterwards every destination is fully committed, the two requests and replies.
    assert uncommitted(emulator) == {}
    status = {d["name"]: d for d in emulator.status()["destinations"]}
    assert status["org2-managed"]["log_length"] == 2  # the two requests
    assert status["org1-managed"]["log_length"] == 2  # the two replies
    print(
        f"request/reply runs took {', '.join(f'{e:.1f}s' for _, _, e in runs)}; fully "
        f"committed {', '.join(f'{lag:.1f}s' for lag in commit_lags)} after success"
    )


# ----------------------------------------------------------------- event-driven


def asset_events(stack: AirflowStack) -> list[dict[str, Any]]:
    """Asset events from the app2app watcher, with the DAG runs that consumed each."""
    rows = stack.home.query(
        "select e.id, e.extra, group_concat(r.run_id) from asset_event e "
        "join asset a on a.id = e.asset_id "
        "left join dagrun_asset_event l on l.event_id = e.id "
        "left join dag_run r on r.id = l.dag_run_id and r.dag_id = ? "
        "where a.uri = 'app2app://org2/inbound-orders' group by e.id order by e.id",
        EVENT_DRIVEN,
    )
    return [
        {
            "id": event_id,
            "extra": json.loads(extra) if isinstance(extra, str) else extra,
            "runs": run_ids.split(",") if run_ids else [],
        }
        for event_id, extra, run_ids in rows
    ]


def test_event_driven_dag_runs_once_per_inbound_message(
    stack: AirflowStack, emulator: EmulatorProcess, status_recorder: StatusRecorder
):
    org1 = emulator.uri("org1-managed")
    org2 = emulator.uri("org2-managed")
    before = emulator.destination_status(org2)
    assert before["committed"] == before["log_length"], before
    mark = len(emulator.output)

    # Unpausing registers the DAG's asset watcher at its next parse; ask for it now.
    stack.set_paused(EVENT_DRIVEN, False)
    stack.reparse(EVENT_DRIVEN)
    wait_for(
        lambda: any(s["uri"] == org2 for s in subscriptions(emulator.output[mark:])),
        60,
        "the triggerer's watcher to subscribe to org2's destination",
        stack,
    )

    username, password = emulator.credential("org1")
    keys = ["order-1", "order-2", "order-3"]
    with App2AppClient(
        endpoint=emulator.endpoint, username=username, password=password, default_sender=org1
    ) as client:
        # Airflow folds every asset event queued before the scheduler's next loop into
        # one run, so each message waits until the previous one started its run.
        for number, key in enumerate(keys, start=1):
            client.produce(org2, {"order": number, "item": f"widget-{number}"}, key=key)
            client.wait_for_delivery([key], timeout=10)
            wait_for(
                lambda key=key: [
                    e
                    for e in asset_events(stack)
                    if e["extra"]["payload"]["key"] == key and e["runs"]
                ],
                60,
                f"an asset event for {key!r} consumed by a DAG run",
                stack,
            )
        # A message the watcher's filter (key regex "order-\\d+") does not match.
        client.produce(org2, {"not": "an order"}, key="other-1")
        client.wait_for_delivery(["other-1"], timeout=10)

    # The watcher received the non-matching message (delivered == log length) ...
    wait_for(
        lambda: (
            emulator.destination_status(org2)["delivered"]
            == emulator.destination_status(org2)["log_length"]
        ),
        30,
        "other-1 to be delivered to the watcher",
        stack,
    )
    # ... and every order's run finishes.
    runs = stack.dag_runs(EVENT_DRIVEN)
    for run in runs:
        assert stack.wait_for_run(EVENT_DRIVEN, run["dag_run_id"], timeout=RUN_TIMEOUT) == (
            "success"
        ), stack.task_instances(EVENT_DRIVEN, run["dag_run_id"])
    time.sleep(3)  # a scheduler loop or two: other-1 must still start no run
    assert_no_state_mismatch(stack)

    events = asset_events(stack)
    assert [e["extra"]["payload"]["key"] for e in events] == keys
    runs = stack.dag_runs(EVENT_DRIVEN)
    assert len(runs) == 3, runs
    assert all(run["state"] == "success" for run in runs), runs
    assert all(run["run_type"] == "asset_triggered" for run in runs), runs
    for number, (key, event) in enumerate(zip(keys, events, strict=True), start=1):
        payload = event["extra"]["payload"]
        assert event["extra"]["from_trigger"] is True
        assert payload["sender"] == org1
        assert payload["recipient"] == org2
        assert payload["content"] == {"order": number, "item": f"widget-{number}"}
        assert payload["content_encoding"] == "json"
        # One run per message: each event started exactly one run of its own, and that
        # run's task saw exactly that message.
        assert len(event["runs"]) == 1, event
        assert stack.home.xcom(EVENT_DRIVEN, event["runs"][0], "process_order") == [key]
    assert len({run for e in events for run in e["runs"]}) == 3

    # One subscription (the watcher's) for org2's destination in this test, active.
    subscribed = [s for s in subscriptions(emulator.output[mark:]) if s["uri"] == org2]
    assert len(subscribed) == 1 and subscribed[0]["role"] == "active", subscribed
    assert status_recorder.peak.get("org2-managed", 0) == 1, status_recorder.peak

    # Commits: each order is committed once Airflow persisted its asset event. other-1,
    # which no waiter claims, is held uncommitted for the watcher's retention (300 s by
    # default) in case a sensor on the same stream wants it, and only then committed
    # with a warning; it was sent last, so it is exactly the one message left behind.
    after_orders = before["log_length"] + len(keys)
    wait_for(
        lambda: emulator.destination_status(org2)["committed"] >= after_orders,
        COMMIT_TIMEOUT,
        "the orders on org2's destination to be committed",
        stack,
    )
    final = emulator.destination_status(org2)
    assert final["log_length"] == after_orders + 1
    assert final["committed"] == after_orders, final
    assert {k: v for k, v in uncommitted(emulator).items() if k != "org2-managed"} == {}


def test_stack_and_emulator_listen_on_loopback_only(stack: AirflowStack, emulator: EmulatorProcess):
    listening = stack.listening_sockets() + [
        ("emulator", address, port) for address, port in listening_sockets_of_group(emulator.pid)
    ]
    assert ("api-server", "127.0.0.1", stack.api_port) in listening
    assert ("emulator", "127.0.0.1", emulator.port) in listening
    assert {address for _, address, _ in listening} == {"127.0.0.1"}, listening


@pytest.fixture(autouse=True)
def _stack_alive_after(stack: AirflowStack):
    """Every component is still running after each test."""
    yield
    stack.check_alive()
