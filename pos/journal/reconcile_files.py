"""Alipay's reconciliation files as imported into the journal (migration 4).

A file is stored whole, in one transaction, as the rows its parser made (JSON
text: the journal does not know their shape). The same name with the same
content (sha256) imports once: a second import changes nothing. A new version
of a file (same name, new content) is stored beside the old one and is the one
the day's report reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pos.journal.journal import Journal

__all__ = ["RECONCILE_TABLES", "StoredFile", "ReconcileFiles"]

RECONCILE_TABLES: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS reconcile_files (
        file_id     INTEGER PRIMARY KEY AUTOINCREMENT,
        day         TEXT NOT NULL,
        name        TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        size        INTEGER NOT NULL,
        family      TEXT NOT NULL,
        role        TEXT NOT NULL,
        row_count   INTEGER NOT NULL,
        rows        TEXT NOT NULL,
        imported_at REAL NOT NULL,
        UNIQUE (name, sha256)
    )""",
    "CREATE INDEX IF NOT EXISTS reconcile_files_day ON reconcile_files (day, name, file_id)",
)


@dataclass(frozen=True)
class StoredFile:
    file_id: int
    day: str
    name: str
    sha256: str
    size: int
    family: str
    role: str
    row_count: int
    rows: str          # JSON list, as the importer gave it
    imported_at: float


class ReconcileFiles:
    """The imported files, on the journal's connection and lock."""

    def __init__(self, journal: Journal) -> None:
        self._db = journal.db

    def add(self, *, day: str, name: str, sha256: str, size: int, family: str, role: str, row_count: int,
            rows: str, now: float) -> bool:
        """Store one file whole; False (and nothing changed) if this exact content is already stored."""
        with self._db.transaction() as conn:
            cur = conn.execute(
                "INSERT OR IGNORE INTO reconcile_files (day, name, sha256, size, family, role, row_count, rows, "
                "imported_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (day, name, sha256, size, family, role, row_count, rows, now))
            return bool(cur.rowcount)

    def of_day(self, day: str) -> list[StoredFile]:
        """The newest version of each file of the day, by name."""
        rows = self._db.rows(
            "SELECT * FROM reconcile_files f WHERE day = ? AND file_id = "
            "(SELECT MAX(file_id) FROM reconcile_files g WHERE g.day = f.day AND g.name = f.name) ORDER BY name",
            (day,))
        return [StoredFile(**r) for r in rows]

    def count(self) -> int:
        return int(self._db.value("SELECT COUNT(*) FROM reconcile_files") or 0)
