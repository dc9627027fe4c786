"""The store: `DATASET/.capcheck/capcheck.db` (SQLite, WAL, numbered migrations).

It is capcheck's only state. This module opens it, migrates it, keeps the
caption journal (before/after text of every caption write, so any write can
be undone), the file-hash cache, and the verdicts: one row per (image
sha256, caption sha256, prompt sha256, backend, model), written the moment
an answer arrives, so a killed run loses only the requests in flight.
"""

from __future__ import annotations

import json
import os
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
    # 2: file hashes (so a re-run does not re-read every image) and verdicts
    """
    CREATE TABLE files (
        path TEXT PRIMARY KEY,         -- relative to the dataset root
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    CREATE TABLE verdicts (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id),
        ts REAL NOT NULL,
        image TEXT NOT NULL,           -- path relative to the dataset when answered
        image_sha TEXT NOT NULL,
        caption_sha TEXT NOT NULL,
        prompt_sha TEXT NOT NULL,
        backend TEXT NOT NULL,
        model TEXT NOT NULL,
        protocol TEXT NOT NULL,
        status TEXT NOT NULL,          -- ok | fix | refused | error
        fixes TEXT NOT NULL DEFAULT '[]',
        observation TEXT,              -- JSON, what the model said the image shows
        claims TEXT,                   -- JSON, what the caption claimed for the checked aspects
        reason TEXT,                   -- why refused or error
        attempts INTEGER NOT NULL DEFAULT 0,
        latency_s REAL,
        raw TEXT,                      -- the provider's response as received
        prompt_tokens INTEGER,
        completion_tokens INTEGER,
        derived_from INTEGER           -- reused the observation of this verdict (no request)
    );
    CREATE UNIQUE INDEX verdict_key ON verdicts(image_sha, caption_sha, prompt_sha, backend, model);
    CREATE INDEX verdict_observation ON verdicts(image_sha, prompt_sha, backend, model);
    CREATE INDEX verdict_run ON verdicts(run_id);
    """,
    # 3: the human loop: undo marks, what people said, captions made right, routed files
    """
    ALTER TABLE runs ADD COLUMN undone_by INTEGER;
    CREATE TABLE human (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id),
        ts REAL NOT NULL,
        image TEXT NOT NULL,           -- relative path when ingested
        image_sha TEXT NOT NULL,
        aspect TEXT NOT NULL,
        value TEXT NOT NULL,
        source TEXT NOT NULL           -- the sorted file it was read from
    );
    CREATE UNIQUE INDEX human_key ON human(image_sha, aspect);
    CREATE TABLE resolutions (         -- a caption text made right by apply or ingest
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id),
        ts REAL NOT NULL,
        image TEXT NOT NULL,
        image_sha TEXT NOT NULL,
        caption_sha TEXT NOT NULL,
        how TEXT NOT NULL              -- apply | ingest
    );
    CREATE INDEX resolution_key ON resolutions(image_sha, caption_sha);
    CREATE TABLE routes (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id),
        ts REAL NOT NULL,
        image TEXT NOT NULL,           -- where the image lives in the dataset
        image_sha TEXT NOT NULL,
        dest TEXT NOT NULL,            -- absolute path in the review tree
        mode TEXT NOT NULL
    );
    CREATE INDEX route_sha ON routes(image_sha);
    """,
]

VERDICT_COLUMNS = ("run_id", "ts", "image", "image_sha", "caption_sha", "prompt_sha", "backend", "model", "protocol",
                   "status", "fixes", "observation", "claims", "reason", "attempts", "latency_s", "raw",
                   "prompt_tokens", "completion_tokens", "derived_from")


class Store:
    def __init__(self, dataset: Path):
        self.root = Path(dataset).resolve()
        state = self.root / STATE_DIR
        state.mkdir(parents=True, exist_ok=True)
        self.path = state / DB_NAME
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
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
        rel = self.rel(path)
        self.db.execute(
            "INSERT INTO journal(run_id, ts, path, before, after, reason) VALUES (?, ?, ?, ?, ?, ?)",
            (self.run_id, time.time(), rel, before, after, reason),
        )

    def last_writer(self, path: Path) -> str | None:
        """The kind of run ('apply', 'ingest', ...) whose journaled write left the
        caption's current text; None if no journaled write did (a hand edit)."""
        from captions.journal import read_caption

        row = self.db.execute("SELECT r.kind, j.after FROM journal j JOIN runs r ON r.id = j.run_id WHERE j.path=? "
                              "ORDER BY j.id DESC LIMIT 1", (self.rel(path),)).fetchone()
        return row["kind"] if row is not None and row["after"] == read_caption(path) else None

    def journal(self, run_id: int | None = None) -> list[sqlite3.Row]:
        if run_id is None:
            return self.db.execute("SELECT * FROM journal ORDER BY id").fetchall()
        return self.db.execute("SELECT * FROM journal WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    # -- file hashes ---------------------------------------------------------

    def file_sha(self, path: Path, hasher) -> str:
        """sha256 of `path`, from the cache while its size and mtime are unchanged."""
        rel = self.rel(path)
        st = os.stat(path)
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path=?", (rel,)).fetchone()
        if row is not None and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            return row["sha256"]
        sha = hasher(path)
        self.db.execute("INSERT OR REPLACE INTO files(path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                        (rel, st.st_size, st.st_mtime_ns, sha))
        return sha

    def rel(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    # -- verdicts ------------------------------------------------------------

    def find_verdict(self, image_sha: str, caption_sha: str, prompt_sha: str, backend: str,
                     model: str) -> sqlite3.Row | None:
        return self.db.execute(
            "SELECT * FROM verdicts WHERE image_sha=? AND caption_sha=? AND prompt_sha=? AND backend=? AND model=?",
            (image_sha, caption_sha, prompt_sha, backend, model)).fetchone()

    def find_answer(self, image_sha: str, prompt_sha: str, backend: str, model: str) -> sqlite3.Row | None:
        """Any real answer (not an error) about this image to this prompt, whatever the caption was."""
        return self.db.execute(
            "SELECT * FROM verdicts WHERE image_sha=? AND prompt_sha=? AND backend=? AND model=? "
            "AND status != 'error' AND derived_from IS NULL ORDER BY id DESC LIMIT 1",
            (image_sha, prompt_sha, backend, model)).fetchone()

    def put_verdict(self, **row: object) -> int:
        """Insert or replace the verdict for its key; committed on return."""
        row.setdefault("run_id", self.run_id)
        row.setdefault("ts", time.time())
        for key in ("fixes", "observation", "claims"):
            if key in row and not isinstance(row[key], str | None):
                row[key] = json.dumps(row[key], ensure_ascii=False)
        values = [row.get(c) for c in VERDICT_COLUMNS]
        marks = ", ".join("?" for _ in VERDICT_COLUMNS)
        cur = self.db.execute(f"INSERT OR REPLACE INTO verdicts({', '.join(VERDICT_COLUMNS)}) VALUES ({marks})",
                              values)
        return cur.lastrowid

    def latest_run(self, kind: str) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE kind=? ORDER BY id DESC LIMIT 1", (kind,)).fetchone()

    def latest_args(self, kind: str) -> dict:
        """The arguments the newest run of `kind` recorded (empty when there is none)."""
        run = self.latest_run(kind)
        return json.loads(run["args"]) if run is not None and run["args"] else {}

    # -- the human loop --------------------------------------------------------

    def add_human(self, image: str, image_sha: str, aspect: str, value: str, source: str) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO human(run_id, ts, image, image_sha, aspect, value, source) VALUES (?,?,?,?,?,?,?)",
            (self.run_id, time.time(), image, image_sha, aspect, value, source))

    def human_answers(self, image_sha: str | None) -> dict[str, str]:
        """aspect -> what a person said this image shows (by folder sort)."""
        rows = self.db.execute("SELECT aspect, value FROM human WHERE image_sha=?", (image_sha,))
        return {r["aspect"]: r["value"] for r in rows}

    def human(self, aspect: str | None = None) -> list[sqlite3.Row]:
        if aspect is None:
            return self.db.execute("SELECT * FROM human ORDER BY image").fetchall()
        return self.db.execute("SELECT * FROM human WHERE aspect=? ORDER BY image", (aspect,)).fetchall()

    def add_resolution(self, image: str, image_sha: str, caption_sha: str, how: str) -> None:
        self.db.execute("INSERT INTO resolutions(run_id, ts, image, image_sha, caption_sha, how) VALUES (?,?,?,?,?,?)",
                        (self.run_id, time.time(), image, image_sha, caption_sha, how))

    def add_route(self, image: str, image_sha: str, dest: str, mode: str) -> None:
        self.db.execute("INSERT INTO routes(run_id, ts, image, image_sha, dest, mode) VALUES (?,?,?,?,?,?)",
                        (self.run_id, time.time(), image, image_sha, dest, mode))

    def routes_for(self, image_sha: str) -> list[sqlite3.Row]:
        return self.db.execute("SELECT * FROM routes WHERE image_sha=? ORDER BY id DESC", (image_sha,)).fetchall()

    def undoable_runs(self) -> list[sqlite3.Row]:
        """Runs that wrote captions and are not undone, newest first (undo runs themselves excluded)."""
        return self.db.execute(
            "SELECT r.* FROM runs r WHERE r.undone_by IS NULL AND r.kind != 'undo' "
            "AND EXISTS (SELECT 1 FROM journal j WHERE j.run_id = r.id) ORDER BY r.id DESC").fetchall()

    def run(self, run_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()

    def mark_undone(self, run_id: int, by: int) -> None:
        self.db.execute("UPDATE runs SET undone_by=? WHERE id=?", (by, run_id))

    def verdicts(self, run_id: int | None = None) -> list[sqlite3.Row]:
        if run_id is None:
            return self.db.execute("SELECT * FROM verdicts ORDER BY id").fetchall()
        return self.db.execute("SELECT * FROM verdicts WHERE run_id=? ORDER BY id", (run_id,)).fetchall()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT our transaction; run statements one by one.
    return [s.strip() for s in sql.split(";") if s.strip()]
