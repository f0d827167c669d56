"""A durable queue of Kafka records on local disk, for traces that Kafka could not take.

Why SQLite (the standard library's) and not a queue library: `persist-queue`, the
maintained one, commits once per item and three times per trace (put, get, ack), has no
batch put or ack and no bound in bytes. Hand-written segment files would need their own
torn-write recovery and acknowledgement cursor. SQLite in WAL mode gives both: a batch is
one transaction with one fsync, a write torn by a crash is rolled back on the next open,
and acknowledging is deleting rows by id, in any order.

The queue is synchronous; the publisher runs it on one worker thread of its own so that
disk I/O never holds the event loop.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from interns.common.logging import get_logger

log = get_logger(__name__)

FILE_NAME = "traces.sqlite"
# Keeps the WAL file from staying large after a long outage has been replayed.
WAL_SIZE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class SpilledRecord:
    """One record waiting on disk: its row id (to acknowledge it), Kafka key and value."""

    id: int
    key: bytes
    value: bytes


@dataclass(frozen=True)
class SpilledBatch:
    """The oldest records waiting, and how many unreadable records were removed on the way."""

    records: list[SpilledRecord]
    corrupt: int = 0


class SpillQueue:
    """A FIFO of Kafka records in `folder`, bounded by `max_bytes` of keys and values.

    Records stay until acknowledged, across restarts. Not thread-safe: one thread uses it.
    """

    def __init__(self, folder: str | Path, max_bytes: int):
        self.path = Path(folder) / FILE_NAME
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = _open(self.path)
        except sqlite3.DatabaseError as error:
            # Only a file SQLite cannot read is set aside; a locked or unopenable one is
            # the caller's error to report.
            if error.sqlite_errorcode not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise
            aside = self.path.with_name(f"{FILE_NAME}.corrupt-{int(time.time())}")
            log.error(
                "trace spill unreadable, set aside for inspection; its traces are not sent",
                path=str(self.path),
                moved_to=str(aside),
                error=str(error),
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self.path}{suffix}")
                if source.exists():
                    source.rename(Path(f"{aside}{suffix}"))
            self._db = _open(self.path)
        self._count()

    def put(self, records: Sequence[tuple[bytes, bytes]]) -> int:
        """Appends (key, value) records durably, in order, as far as the bound allows.
        Returns how many were kept: those beyond `max_bytes` are not written."""
        room = self.max_bytes - self.pending_bytes
        kept: list[tuple[bytes, bytes]] = []
        for key, value in records:
            size = len(key) + len(value)
            if size > room:
                break
            kept.append((key, value))
            room -= size
        if kept:
            with self._transaction():
                self._db.executemany("INSERT INTO records (key, value) VALUES (?, ?)", kept)
            self.pending += len(kept)
            self.pending_bytes += sum(len(key) + len(value) for key, value in kept)
        return len(kept)

    def peek(self, limit: int) -> SpilledBatch:
        """The oldest `limit` records, without removing them. A record whose value is no
        longer a JSON object (the disk altered it) is removed and counted, not returned."""
        rows = self._db.execute(
            "SELECT id, key, value FROM records ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        if not rows:
            # Another process on the same folder may have sent them: count again.
            self._count()
        readable: list[SpilledRecord] = []
        corrupt: list[SpilledRecord] = []
        for id, key, value in rows:
            record = SpilledRecord(id, bytes(key), bytes(value))
            (readable if _is_json_object(record.value) else corrupt).append(record)
        for record in corrupt:
            log.error(
                "corrupt trace record in the spill, removed",
                id=record.id,
                value=record.value[:200].decode("utf-8", errors="replace"),
            )
        self.ack([record.id for record in corrupt])
        return SpilledBatch(readable, len(corrupt))

    def ack(self, ids: Sequence[int]) -> None:
        """Removes the records with these ids: Kafka has them."""
        if not ids:
            return
        with self._transaction():
            removed = [
                self._db.execute(
                    "DELETE FROM records WHERE id = ? RETURNING length(key) + length(value)",
                    (id,),
                ).fetchall()
                for id in ids
            ]
        sizes = [row[0] for rows in removed for row in rows]
        self.pending -= len(sizes)
        self.pending_bytes -= sum(sizes)
        if self.pending == 0:
            # Gives the space of a replayed outage back to the file system. executescript,
            # because execute() steps the pragma once and so frees a single page.
            self._db.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")

    def close(self) -> None:
        self._db.close()

    def _count(self) -> None:
        self.pending, self.pending_bytes = self._db.execute(
            "SELECT count(*), coalesce(sum(length(key) + length(value)), 0) FROM records"
        ).fetchone()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
    try:
        # auto_vacuum only takes effect on a new file, before its first table.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed batch is on disk (fsync of the WAL) before put() returns.
        db.execute("PRAGMA synchronous = FULL")
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS records ("
            "id INTEGER PRIMARY KEY AUTOINCREMENT, key BLOB NOT NULL, value BLOB NOT NULL)"
        )
        db.execute("SELECT count(*) FROM records").fetchone()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _is_json_object(value: bytes) -> bool:
    try:
        return isinstance(json.loads(value), dict)
    except ValueError:
        return False
