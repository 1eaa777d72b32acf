"""The durable store: per-destination logs and committed positions, SQLite and memory.

Both stores number each destination's messages from 1, keep committed positions that
never move backwards and return, on open, exactly the uncommitted tail. SQLite runs
in WAL mode with full fsync and groups concurrent writes into shared transactions.
"""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from airflow_provider_app2app.emulator.store import (
    DATABASE_NAME,
    MemoryStore,
    NewMessage,
    SqliteStore,
    Store,
)


def message(destination: str, index: int, **extra) -> NewMessage:
    return NewMessage(
        destination=destination,
        sender="kld://sender",
        content=f"content-{index}".encode(),
        key=extra.get("key", f"k{index}"),
        signature=extra.get("signature"),
        timestamp_ms=1_700_000_000_000 + index,
    )


@pytest.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path):
    made: Store = (
        SqliteStore(tmp_path / DATABASE_NAME) if request.param == "sqlite" else MemoryStore()
    )
    assert await made.open() == {}
    try:
        yield made
    finally:
        await made.close()


async def test_sequence_numbers_count_per_destination(store):
    records = await store.append([message("a", 0), message("b", 0), message("a", 1)])
    assert [(r.message.destination, r.seq) for r in records] == [("a", 1), ("b", 1), ("a", 2)]
    more = await store.append([message("a", 2)])
    assert more[0].seq == 3


async def test_committed_position_never_moves_backwards(store):
    await store.append([message("a", i) for i in range(5)])
    await store.commit("a", 3)
    await store.commit("a", 1)
    if isinstance(store, SqliteStore):
        await store.close()
        store = SqliteStore(store.path)
    state = (await store.open())["a"]
    assert (state.length, state.committed) == (5, 3)
    assert [r.seq for r in state.uncommitted] == [4, 5]
    if isinstance(store, SqliteStore):
        await store.close()


async def test_sqlite_reopen_returns_content_key_signature_and_timestamp(tmp_path):
    path = tmp_path / DATABASE_NAME
    first = SqliteStore(path)
    await first.open()
    await first.append([message("d", 0, key=None, signature=b"\x01\x02"), message("d", 1)])
    await first.close()
    second = SqliteStore(path)
    state = (await second.open())["d"]
    await second.close()
    assert [r.message for r in state.uncommitted] == [
        message("d", 0, key=None, signature=b"\x01\x02"),
        message("d", 1),
    ]


async def test_sqlite_uses_wal_and_full_sync(tmp_path):
    store = SqliteStore(tmp_path / DATABASE_NAME)
    await store.open()
    await store.close()
    connection = sqlite3.connect(tmp_path / DATABASE_NAME)
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


async def test_concurrent_writes_share_transactions(tmp_path):
    store = SqliteStore(tmp_path / DATABASE_NAME)
    await store.open()
    results = await asyncio.gather(
        *(store.append([message("g", i)]) for i in range(200)),
        *(store.commit("g", i) for i in range(1, 50)),
    )
    await store.close()
    seqs = sorted(r[0].seq for r in results[:200])
    assert seqs == list(range(1, 201))
    assert store.transactions < 100


async def test_a_failed_write_reports_the_error_and_keeps_numbering(tmp_path):
    store = SqliteStore(tmp_path / DATABASE_NAME)
    await store.open()
    await store.append([message("f", 0)])
    connection = sqlite3.connect(tmp_path / DATABASE_NAME, timeout=0)
    connection.execute("BEGIN EXCLUSIVE")  # another writer holds the lock
    await store._run(store._connection.execute, "PRAGMA busy_timeout = 0")
    with pytest.raises(sqlite3.OperationalError):
        await store.append([message("f", 1)])
    connection.rollback()
    connection.close()
    records = await store.append([message("f", 2)])
    assert records[0].seq == 2
    await store.close()


async def test_writes_after_close_are_refused(tmp_path):
    store = SqliteStore(tmp_path / DATABASE_NAME)
    await store.open()
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.append([message("x", 0)])
