"""Leadership: several servers may share one store; exactly one runs the scheduling loop. The others
serve the API (their submissions and cancellations go through the store) and take over when the
leader dies. The lock lives as long as the leader's process: a file lock (`flock`) beside a SQLite
store, a PostgreSQL session advisory lock otherwise; a `kill -9` releases both at once (the kernel
closes the file, the database sees its connection drop)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, text

from suanli.service.store import Store

ADVISORY_KEY = 0x5355414E4C49  # "SUANLI": the one scheduling loop per database


class Leadership(Protocol):
    def try_acquire(self) -> bool:
        """Lead if no one else does; True while this process leads."""

    def release(self) -> None: ...


class FileLock:
    """An exclusive `flock` on a file beside the SQLite database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the file drops the lock
            self._fd = None


class AdvisoryLock:
    """`pg_try_advisory_lock` held on one connection for as long as this server leads."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._connection: Connection | None = None

    def try_acquire(self) -> bool:
        if self._connection is not None:
            return True
        connection = self.store.engine.connect()
        if connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_KEY}).scalar():
            connection.commit()
            self._connection = connection
            return True
        connection.close()
        return False

    def release(self) -> None:
        if self._connection is not None:
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
            self._connection.close()
            self._connection = None


def leadership_for(store: Store) -> Leadership:
    if store.url.startswith("sqlite"):
        database = store.engine.url.database or "suanli.db"
        return FileLock(Path(database).with_name(Path(database).name + ".leader"))
    return AdvisoryLock(store)
