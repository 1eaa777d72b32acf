"""REST on the socket's port (point 8): address book, health and status.

``GET /api/v1/addressbook`` takes the same Basic auth as the socket (with or without
the prefix) and lists every destination grouped by membership (PROTOCOL.md §6);
``GET /healthz`` answers while serving; ``GET /emulator/status`` shows connections
with their generation, subscriptions and the active one, and per destination the
log length and the committed and delivered positions.
"""

from __future__ import annotations

import base64

import pytest

from tests.support.clients import proven


def test_addressbook_lists_every_destination_grouped_by_membership(emulator):
    code, book = emulator.get("/api/v1/addressbook", auth=emulator.credential("org1"))
    assert code == 200
    assert [entry["membership"] for entry in book] == ["/org1", "/org2"]
    listed = {(d["name"], d["uri"]) for entry in book for d in entry["destinations"]}
    assert listed == {(d["name"], d["uri"]) for d in emulator.environment["destinations"]}
    assert all(set(d) == {"uri", "name"} for entry in book for d in entry["destinations"])


def test_addressbook_accepts_credentials_without_basic_prefix(emulator):
    username, password = emulator.credential("org2")
    bare = base64.b64encode(f"{username}:{password}".encode()).decode()
    code, book = emulator.get("/api/v1/addressbook", authorization=bare)
    assert code == 200 and len(book) == 2


@pytest.mark.parametrize(
    ("auth", "fragment"),
    [(("org1-app", "nope"), "Wrong password"), (None, "No Authorization header")],
    ids=["wrong-password", "missing"],
)
def test_addressbook_refuses_bad_credentials_with_401(emulator, auth, fragment):
    code, body = emulator.get("/api/v1/addressbook", auth=auth)
    assert code == 401
    assert fragment in body["error"]
    assert "nope" not in body["error"]


def test_healthz_answers_ok(emulator):
    assert emulator.get("/healthz") == (200, {"status": "ok"})


async def test_status_shows_connections_subscriptions_and_positions(
    emulator, clients, pool, generation
):
    dst = pool.uri("org2")
    active = await clients("org2", generation, auto_commit=False, read_ahead=5)
    standby = await clients("org2", generation)
    producer = await clients("org1", generation)
    await active.subscribe(dst)
    await standby.subscribe(dst)
    for index in range(3):
        await producer.produce(proven(pool.uri("org1"), dst, str(index)))
    for _ in range(3):
        await active.next_delivery()
    await active.commit()
    entry = await emulator.wait_for_destination(dst, committed=1)
    status = await emulator.status_async()
    assert set(status) >= {"version", "pid", "endpoint", "store", "connections", "destinations"}
    assert status["pid"] == emulator.pid and status["endpoint"] == emulator.endpoint
    by_id = {c["id"]: c for c in status["connections"]}
    assert by_id[entry["active"]]["generation"] == generation
    assert by_id[entry["active"]]["username"] == "org2-app"
    assert by_id[entry["active"]]["subscriptions"] == [dst]
    assert by_id[entry["active"]]["outstanding"] == 2
    assert len(entry["standbys"]) == 1 and entry["standbys"][0] in by_id
    assert (entry["log_length"], entry["delivered"], entry["committed"]) == (3, 3, 1)
    assert entry["name"] == dst.rsplit("/", 1)[1] and entry["kaleido_managed"] is True
    assert all("password" not in str(c) for c in status["connections"])


def test_unknown_paths_are_404(emulator):
    code, _ = emulator.get("/api/v2/nothing")
    assert code == 404
