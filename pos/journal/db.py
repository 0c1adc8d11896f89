"""The journal file's one SQLite connection, its lock and its transactions.

Every statement of the journal (sales, refunds, events, print jobs, the till's
tables) goes through one `JournalDB`: one connection per process, one lock, so
a print-job update on the printer's thread can never slip into the middle of
an engine transaction on the payments thread.

Durability: WAL with `synchronous=FULL` (a commit survives power loss, not
only a process crash); `secure_delete` zeroes freed pages.

Checkpoints: SQLite copies the WAL back into the database file every 1,000
pages by default, inside whichever commit crosses that size: in the daemon,
about one sale in 35 had a commit that also ran the checkpoint (1.2 ms
instead of 0.3 ms typically, up to 8-11 ms with the disk busy), one of the
things the slowest sales waited for (README, Performance). A long-running
process calls `start_checkpoints()`: a thread of its own, on a connection of
its own, checkpoints (PASSIVE: it never blocks a writer, and no writer waits
for it) every `CHECKPOINT_EVERY` commits, and the writing connection's own automatic
checkpoint stays only as a backstop at `BACKSTOP_PAGES`. Short-lived users
(the CLI, tests) keep SQLite's default.

Memory: SQLite's page cache is `CACHE_KIB` (512 KiB, 128 pages) instead of
its default 2 MB. A sale's transactions touch a few dozen pages (the right
edge of each b-tree); the default cache filled with the journal's other
pages as it grew (+1.6 MB of the daemon's memory by 1,000 sales, 2 MB by
about 2,000), pages the kernel's page cache holds anyway.

Test hook: the environment variable `POS_CRASH_AT=<point>:<n>` makes this
process SIGKILL itself at the n-th transaction commit (counted from 1 in this
process): `before:<n>` just before the COMMIT (the transaction is lost),
`after:<n>` just after it (committed, the next command has not run).
tests/test_crash.py uses it to stop at every commit point in turn. It is read
once, at open. Single autocommitted statements (`write`) are not counted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pos.core.errors import EXIT_UNAVAILABLE, UserError

__all__ = ["CRASH_ENV", "JournalDB", "JournalError", "Row"]

CRASH_ENV = "POS_CRASH_AT"
CACHE_KIB = 512     # SQLite's page cache for the journal (its default: 2,000 KiB); see the module's docstring
# Background checkpoints (see the module's docstring). A sale commits about 4 times and writes
# about 25 pages: 100 commits are about 600-700 pages, what SQLite's own 1,000-page default
# checkpoints at. The backstop bounds the WAL (40 MB) should the thread fall behind.
CHECKPOINT_EVERY = 100
BACKSTOP_PAGES = 10_000

log = logging.getLogger("pos.journal")

Row = dict[str, Any]


class JournalError(UserError):
    """The journal cannot be opened or a request to it is not valid."""


def _parse_crash_hook(value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, n = value.partition(":")
    if point not in ("before", "after") or not (n.isascii() and n.isdigit()) or int(n) < 1:
        raise JournalError(f"{CRASH_ENV}={value!r}: expected before:N or after:N (a test hook)")
    return point, int(n)


def unreadable(path: Path, exc: sqlite3.Error) -> JournalError:
    """The one message for a journal file SQLite cannot use."""
    return JournalError(f"{path} is not a usable journal ({exc}): restore it from a backup or move "
                        "it away (a new, empty journal is created on the next start)",
                        exit_code=EXIT_UNAVAILABLE)



def _create_private(path: Path) -> None:
    """The journal's folder (0700) and file (0600), made so whatever the umask.

    SQLite gives the -wal and -shm files the mode of the database file, so
    they are private too. Run outside the systemd unit (UMask=0077), the
    process umask is often 0022: sales history is not for other users.
    """
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # mkdir's mode is filtered by the umask
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)

class JournalDB:
    """One connection to the journal file, shared by every part of the journal."""

    def __init__(self, conn: sqlite3.Connection, path: Path, *, read_only: bool = False) -> None:
        self.conn = conn
        self.path = path
        self.read_only = read_only
        self.lock = threading.RLock()
        self._commits = 0
        self._since_checkpoint = 0
        self._checkpoint_wake: threading.Event | None = None
        self._checkpointer: threading.Thread | None = None
        self._checkpoint_stop = False
        self.checkpoints = 0    # done by the background thread (start_checkpoints)
        self._crash = _parse_crash_hook(os.environ.get(CRASH_ENV))

    @classmethod
    def connect(cls, path: Path, *, read_only: bool = False) -> JournalDB:
        """Open the file; read_only never writes it (no -wal/-shm owned by whoever runs `pos doctor`)."""
        try:
            if read_only:
                conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                       check_same_thread=False, timeout=2.0)
            else:
                _create_private(path)
                conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=10.0)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the journal {path}: {exc}: check that [terminal] state_dir "
                               "exists and the service user may write it", exit_code=EXIT_UNAVAILABLE) from None
        db = cls(conn, path, read_only=read_only)
        if read_only:
            return db
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before we send the request it leads to.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise unreadable(path, exc) from None
        return db

    def close(self) -> None:
        self.stop_checkpoints()
        with self.lock, contextlib.suppress(sqlite3.Error):
            self.conn.close()

    # ------------------------------------------------------------ checkpoints

    def start_checkpoints(self) -> None:
        """Checkpoint the WAL on a background thread instead of inside a writer's commit.

        For the daemon: its commits then never run a checkpoint (unless the
        WAL reaches BACKSTOP_PAGES). Idempotent; `close()` stops the thread."""
        if self.read_only or self._checkpointer is not None:
            return
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0)
            conn.execute("PRAGMA synchronous=FULL")   # the database file synced after each checkpoint
            conn.execute("PRAGMA cache_size=-64")     # a checkpoint reads the WAL, not through the cache
            with self.lock:
                self.conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise JournalError(f"cannot open the journal {self.path} for checkpoints: {exc}",
                               exit_code=EXIT_UNAVAILABLE) from None
        self._checkpoint_stop = False
        self._checkpoint_wake = wake = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(conn, wake),
                                              name="journal-checkpoint", daemon=True)
        self._checkpointer.start()

    def stop_checkpoints(self) -> None:
        thread, wake = self._checkpointer, self._checkpoint_wake
        if thread is None or wake is None:
            return
        self._checkpoint_stop = True
        wake.set()
        thread.join(timeout=30)
        self._checkpointer = self._checkpoint_wake = None

    def _checkpoint_loop(self, conn: sqlite3.Connection, wake: threading.Event) -> None:
        try:
            while True:
                wake.wait()
                wake.clear()
                if self._checkpoint_stop:
                    return
                try:
                    # PASSIVE: copies what no reader still needs, takes no lock a writer waits for.
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:
                    # The backstop checkpoints inside a commit meanwhile; a failing disk fails the commits.
                    log.warning("journal checkpoint failed: %s", exc)
        finally:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _committed(self) -> None:
        """After each commit of this connection: every CHECKPOINT_EVERY, wake the checkpoint thread."""
        wake = self._checkpoint_wake
        if wake is not None:
            self._since_checkpoint += 1
            if self._since_checkpoint >= CHECKPOINT_EVERY:
                self._since_checkpoint = 0
                wake.set()

    # ------------------------------------------------------------ writing

    @contextmanager
    def transaction(self, *, crash_point: bool = True) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; rolled back if the body raises.

        crash_point=False: not one of the commits POS_CRASH_AT counts (opening
        the file is not a step of a sale).
        """
        with self.lock:
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._not_recorded(exc) from exc
            try:
                yield self.conn
                if crash_point:
                    self._commit()
                else:
                    self.conn.execute("COMMIT")
                self._committed()
            except BaseException as exc:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._not_recorded(exc) from exc
                raise

    def _not_recorded(self, exc: sqlite3.Error) -> JournalError:
        # Callers outside the journal know no SQLite: a failed write is a JournalError.
        return JournalError(f"the journal {self.path} could not record this: {exc}", exit_code=EXIT_UNAVAILABLE)

    def _commit(self) -> None:
        """COMMIT, honouring the POS_CRASH_AT test hook around it."""
        self._commits += 1
        if self._crash and self._crash == ("before", self._commits):
            os.kill(os.getpid(), signal.SIGKILL)
        self.conn.execute("COMMIT")
        if self._crash and self._crash == ("after", self._commits):
            os.kill(os.getpid(), signal.SIGKILL)

    def write(self, sql: str, params: Sequence[Any] = (), *, durable: bool = True) -> int:
        """One statement, committed on its own; returns the number of rows it changed.

        Run inside a `transaction()` this thread holds, it is part of that transaction
        instead (the lock is reentrant and the connection is the same): the terminal
        queues a receipt that way, with the outcome it prints.

        durable=False: committed without waiting for the disk (synchronous=NORMAL
        for this one statement: in WAL mode it reaches the disk with the next
        durable commit or checkpoint; a process crash keeps it, a power loss may
        not). Only for marks whose loss is harmless (a receipt marked printed)."""
        with self.lock:
            try:
                before = None
                if not durable and not self.conn.in_transaction and not self.read_only:
                    level = int(self.conn.execute("PRAGMA synchronous").fetchone()[0])
                    if level > 1:   # FULL or EXTRA (a bulk builder may have set OFF: left as it is)
                        before = level
                        self.conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    changed = self.conn.execute(sql, params).rowcount
                finally:
                    if before is not None:
                        self.conn.execute(f"PRAGMA synchronous={before}")
                if not self.conn.in_transaction:
                    self._committed()
                return changed
            except sqlite3.Error as exc:
                raise JournalError(f"cannot write the journal {self.path}: {exc}",
                                   exit_code=EXIT_UNAVAILABLE) from None

    # ------------------------------------------------------------ reading

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query as a dict by column name; SQLite errors become JournalError."""
        with self.lock:
            try:
                cur = self.conn.execute(sql, params)
                names = [d[0] for d in cur.description]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            except sqlite3.Error as exc:
                raise JournalError(f"cannot read the journal {self.path}: {exc}",
                                   exit_code=EXIT_UNAVAILABLE) from None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        found = self.rows(sql, params)
        return found[0] if found else None

    def value(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first column of the first row, or None."""
        row = self.one(sql, params)
        return next(iter(row.values())) if row else None
