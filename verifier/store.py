"""The store: `DATASET/.capcheck/capcheck.db` (SQLite, WAL, numbered migrations).

It is capcheck's only state. This module opens it, migrates it, and keeps
the caption journal (before/after text of every caption write, so any
write can be undone). Verdict tables arrive with later migrations.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

STATE_DIR = ".capcheck"
DB_NAME = "capcheck.db"

# Append only: a migration, once released, is never edited.
MIGRATIONS: list[str] = [
    # 1: runs and the caption journal
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        started REAL NOT NULL,
        args TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE journal (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id),
        ts REAL NOT NULL,
        path TEXT NOT NULL,            -- relative to the dataset root
        before TEXT,                   -- NULL: the file did not exist
        after TEXT NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX journal_run ON journal(run_id);
    """,
]


class Store:
    def __init__(self, dataset: Path):
        self.root = Path(dataset).resolve()
        state = self.root / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        self.path = state / DB_NAME
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self.run_id: int | None = None

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(sql):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={number}")
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def start_run(self, kind: str, args: str = "") -> int:
        cur = self.db.execute("INSERT INTO runs(kind, started, args) VALUES (?, ?, ?)", (kind, time.time(), args))
        self.run_id = cur.lastrowid
        return self.run_id

    # captions.journal.Journal
    def record(self, path: Path, before: str | None, after: str, reason: str) -> None:
        if self.run_id is None:
            self.start_run(reason)
        rel = Path(path).resolve().relative_to(self.root).as_posix()
        self.db.execute(
            "INSERT INTO journal(run_id, ts, path, before, after, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (self.run_id, time.time(), rel, before, after, reason),
        )

    def journal(self, run_id: int | None = None) -> list[sqlite3.Row]:
        self.db.row_factory = sqlite3.Row
        try:
            if run_id is None:
                return self.db.execute("SELECT * FROM journal ORDER BY id").fetchall()
            return self.db.execute("SELECT * FROM journal WHERE run_id=? ORDER BY id", (run_id,)).fetchall()
        finally:
            self.db.row_factory = None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT our transaction; run statements one by one.
    return [s.strip() for s in sql.split(";") if s.strip()]
