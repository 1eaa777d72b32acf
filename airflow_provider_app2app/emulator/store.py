"""Durable storage: one append-only log and one committed position per destination.

Two implementations behind one interface:

* :class:`SqliteStore` (the default) keeps everything in ``app2app.sqlite3`` in the
  data directory, in WAL mode with ``synchronous=FULL``: when :meth:`Store.append` or
  :meth:`Store.commit` returns, the transaction has been fsynced, so neither SIGKILL
  nor a power cut loses it. All writes go through one writer thread doing *group
  commit*: whatever was requested while the previous transaction was being written
  becomes the next transaction, so throughput grows with load instead of paying one
  fsync per message.
* :class:`MemoryStore` keeps the same state in memory, for fast tests.

A log position counts messages: the first message of a destination has sequence
number 1, and a committed position of ``n`` means messages ``1..n`` are committed.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DATABASE_NAME = "app2app.sqlite3"
"""File name of the SQLite database in the data directory."""

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    destination  TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    sender       TEXT    NOT NULL,
    key          TEXT,
    content      BLOB    NOT NULL,
    signature    BLOB,
    timestamp_ms INTEGER NOT NULL,
    PRIMARY KEY (destination, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS positions (
    destination TEXT PRIMARY KEY,
    committed   INTEGER NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class NewMessage:
    """A message accepted from a producer, not yet in a log.

    :param destination: URI of the recipient destination (whose log it goes to).
    :param sender: URI of the sending destination.
    :param content: the content bytes.
    :param key: the producer's key, or ``None``.
    :param signature: the sender's signature, for externally-managed senders.
    :param timestamp_ms: when the service accepted it, in ms since the epoch.
    """

    destination: str
    sender: str
    content: bytes = field(repr=False)
    key: str | None
    signature: bytes | None = field(repr=False)
    timestamp_ms: int


@dataclass(frozen=True)
class LogRecord:
    """A message stored in a destination's log.

    :param seq: its position in the log, from 1.
    :param message: the message.
    """

    seq: int
    message: NewMessage


@dataclass
class LogState:
    """A destination's log as found when the store opens.

    :param length: how many messages the log holds.
    :param committed: the committed position.
    :param uncommitted: the records after the committed position, in order.
    """

    length: int = 0
    committed: int = 0
    uncommitted: list[LogRecord] = field(default_factory=list)


class Store(abc.ABC):
    """Where logs and committed positions live; every write is durable on return."""

    kind: ClassVar[str]
    """``"sqlite"`` or ``"memory"``, as the status endpoint reports it."""

    @abc.abstractmethod
    async def open(self) -> dict[str, LogState]:
        """Open the store and return the state of every log it holds."""

    @abc.abstractmethod
    async def append(self, messages: Sequence[NewMessage]) -> list[LogRecord]:
        """Append messages (to their destinations' logs) in one atomic write.

        :return: the stored records, in the order given, with their sequence numbers.
        """

    @abc.abstractmethod
    async def commit(self, destination: str, position: int) -> None:
        """Record a destination's committed position (never moves backwards)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish pending writes and release resources."""


class MemoryStore(Store):
    """A :class:`Store` in memory: fast, and gone when the process ends."""

    kind = "memory"

    def __init__(self) -> None:
        self._logs: dict[str, list[LogRecord]] = {}
        self._committed: dict[str, int] = {}

    async def open(self) -> dict[str, LogState]:
        return {
            uri: LogState(
                len(records),
                self._committed.get(uri, 0),
                records[self._committed.get(uri, 0) :],
            )
            for uri, records in self._logs.items()
        }

    async def append(self, messages: Sequence[NewMessage]) -> list[LogRecord]:
        stored = []
        for message in messages:
            log_ = self._logs.setdefault(message.destination, [])
            record = LogRecord(len(log_) + 1, message)
            log_.append(record)
            stored.append(record)
        return stored

    async def commit(self, destination: str, position: int) -> None:
        self._committed[destination] = max(self._committed.get(destination, 0), position)

    async def close(self) -> None:
        return None


@dataclass
class _Write:
    messages: Sequence[NewMessage] = ()
    commit: tuple[str, int] | None = None
    future: asyncio.Future[list[LogRecord]] | None = None


class SqliteStore(Store):
    """A :class:`Store` in an SQLite database (WAL, ``synchronous=FULL``, group commit).

    :param path: the database file; created with its schema when missing.
    """

    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="app2app-store")
        self._connection: sqlite3.Connection | None = None
        self._next_seq: dict[str, int] = {}
        self._pending: list[_Write] = []
        self._wakeup = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._closing = False
        self.transactions = 0
        """How many write transactions were made (for the status endpoint)."""

    async def _run(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run ``function(*args)`` on the store's own thread (SQLite is used from it only)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

    def _open_sync(self) -> dict[str, LogState]:
        connection = sqlite3.connect(self.path, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            connection.close()
            raise RuntimeError(
                f"{self.path} has schema version {version}, this emulator knows "
                f"{_SCHEMA_VERSION}; use another --data-dir or delete the file."
            )
        connection.executescript(_SCHEMA)
        connection.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._connection = connection
        states: dict[str, LogState] = {}
        for uri, length in connection.execute(
            "SELECT destination, MAX(seq) FROM messages GROUP BY destination"
        ):
            states[uri] = LogState(length=length)
            self._next_seq[uri] = length + 1
        for uri, committed in connection.execute("SELECT destination, committed FROM positions"):
            states.setdefault(uri, LogState()).committed = committed
        for uri, state in states.items():
            rows = connection.execute(
                "SELECT seq, sender, key, content, signature, timestamp_ms FROM messages "
                "WHERE destination = ? AND seq > ? ORDER BY seq",
                (uri, state.committed),
            )
            state.uncommitted = [
                LogRecord(seq, NewMessage(uri, sender, bytes(content), key, sig, ts))
                for seq, sender, key, content, sig, ts in rows
            ]
        return states

    async def open(self) -> dict[str, LogState]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        states = await self._run(self._open_sync)
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())
        return states

    def _submit(self, write: _Write) -> asyncio.Future[list[LogRecord]]:
        if self._closing or self._writer is None:
            raise RuntimeError("The store is closed.")
        write.future = asyncio.get_running_loop().create_future()
        self._pending.append(write)
        self._wakeup.set()
        return write.future

    async def append(self, messages: Sequence[NewMessage]) -> list[LogRecord]:
        if not messages:
            return []
        return await self._submit(_Write(messages=messages))

    async def commit(self, destination: str, position: int) -> None:
        await self._submit(_Write(commit=(destination, position)))

    async def _write_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                try:
                    results = await self._run(self._write_sync, batch)
                except Exception as exc:
                    log.error("Could not write to %s: %s", self.path, exc)
                    for write in batch:
                        if write.future is not None and not write.future.done():
                            write.future.set_exception(exc)
                else:
                    for write, result in zip(batch, results, strict=True):
                        if write.future is not None and not write.future.done():
                            write.future.set_result(result)
            if self._closing and not self._pending:
                return

    def _write_sync(self, batch: list[_Write]) -> list[list[LogRecord]]:
        connection = self._connection
        assert connection is not None
        saved = dict(self._next_seq)
        results: list[list[LogRecord]] = []
        rows: list[tuple[object, ...]] = []
        commits: dict[str, int] = {}
        for write in batch:
            stored = []
            for message in write.messages:
                seq = self._next_seq.get(message.destination, 1)
                self._next_seq[message.destination] = seq + 1
                stored.append(LogRecord(seq, message))
                rows.append(
                    (
                        message.destination,
                        seq,
                        message.sender,
                        message.key,
                        message.content,
                        message.signature,
                        message.timestamp_ms,
                    )
                )
            if write.commit is not None:
                uri, position = write.commit
                commits[uri] = max(commits.get(uri, 0), position)
            results.append(stored)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            connection.executemany(
                "INSERT INTO positions VALUES (?, ?) ON CONFLICT(destination) DO UPDATE "
                "SET committed = MAX(committed, excluded.committed)",
                list(commits.items()),
            )
            connection.execute("COMMIT")
        except BaseException:
            self._next_seq = saved
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        self.transactions += 1
        return results

    async def close(self) -> None:
        if self._writer is not None and not self._closing:
            self._closing = True
            self._wakeup.set()
            await self._writer
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await self._run(connection.close)
        self._executor.shutdown(wait=True)
