"""The store's schema: numbered migrations, and the checks before any of them runs.

A store is opened only if it is one: a SQLite file whose `user_version`
this capcheck knows and whose tables are ours. Anything else (0 bytes,
junk, half a file, another program's database, a newer capcheck's schema)
is a `StoreError` naming the file and what to do, never a fresh store laid
over it: a 0-byte `capcheck.db` once silently started over, losing the
undo history. Before a migration touches an existing store, SQLite's own
backup API copies it to `capcheck.db.bak-v<N>-<time>`, a way back if the
migration or the disk fails half way. Migrations are SQL; one that cleans
secrets out (`scrub.SCRUBS`) calls Python functions `migrate` registers,
and cleans the backups too, which would otherwise keep what it removed.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from verifier.core.scrub import SCRUBS, SQLITE_HEADER, checkpoint, functions, scrub_backups
from verifier.errors import StoreError

# Tables every version of the schema has (migrations 1-2); a file without them is not ours.
CORE_TABLES = frozenset({"runs", "journal", "files", "verdicts"})

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
    # 4: batch jobs (stored the moment they are created, so a re-run polls instead of resubmitting),
    #    and token usage reported only as a total (codex)
    """
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,           -- the provider's batch id
        run_id INTEGER REFERENCES runs(id),
        ts REAL NOT NULL,
        base_url TEXT,                 -- NULL: OpenAI
        backend TEXT NOT NULL,         -- the verdict key its answers are stored under
        model TEXT NOT NULL,
        prompt_sha TEXT NOT NULL,
        input_file TEXT NOT NULL,
        status TEXT NOT NULL,          -- the provider's last word: validating, in_progress, completed, ...
        collected REAL                 -- when its answers were stored (NULL: still to collect)
    );
    CREATE TABLE batch_lines (
        batch_id TEXT NOT NULL REFERENCES batches(id),
        custom_id TEXT NOT NULL
    );
    CREATE INDEX batch_line_batch ON batch_lines(batch_id);
    ALTER TABLE verdicts ADD COLUMN total_tokens INTEGER;
    """,
    # 5: a caption write is an intent until its file holds the new text (captions/journal.py);
    #    `deletes`: the write removes the file (undo of a run that created it)
    """
    ALTER TABLE journal ADD COLUMN state TEXT NOT NULL DEFAULT 'done';   -- pending | done
    ALTER TABLE journal ADD COLUMN deletes INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX journal_pending ON journal(state) WHERE state != 'done';
    """,
    # 6: a store written before capcheck redacted `--base-url` (fd91255) holds its secrets
    #    (`user:pass@`, `?key=`) in verify runs' args and in batches' URLs: they go, the rest stays
    #    (a batch is looked up by its redacted URL, so an old one is found again). The functions are
    #    `urls.redact_args` and `urls.redact_url`, registered by `migrate`; the statements are `scrub.SCRUB`'s.
    """
    UPDATE runs SET args = capcheck_redact_args(args) WHERE args LIKE '%://%';
    UPDATE batches SET base_url = capcheck_redact_url(base_url) WHERE base_url LIKE '%://%';
    """,
]


def aside(path: Path) -> str:
    """What a person does with a store we refuse: the newest backup, if any, else move it aside."""
    backups = sorted(path.parent.glob(f"{path.name}.bak-*"), key=lambda p: p.stat().st_mtime)
    restore = f"restore the newest backup (cp {backups[-1].name} {path.name}) or " if backups else ""
    return f"{restore}move it aside (mv {path.name} {path.name}.broken) and run again for a fresh store"


def check_file(path: Path) -> None:
    """Refuse a file that is not a SQLite database before SQLite sees it (it
    would take a 0-byte file as a new database and write a fresh one over it)."""
    if not path.exists():
        return
    wal = path.with_name(path.name + "-wal")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(path, f"cannot read the store: {exc.strerror or exc}") from None
    if not head and not (wal.exists() and wal.stat().st_size):
        raise StoreError(path, f"the store is empty (0 bytes), so its history is gone from it: {aside(path)}")
    if head and head != SQLITE_HEADER:
        raise StoreError(path, f"not a capcheck store (not a SQLite database): {aside(path)}")


def check_schema(db: sqlite3.Connection, path: Path) -> int:
    """The store's schema version; StoreError when it is not ours or is newer than this capcheck."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version > len(MIGRATIONS):
        raise StoreError(path, f"the store has schema {version}, newer than this capcheck knows "
                               f"({len(MIGRATIONS)}): upgrade capcheck (pip install -U capcheck), or {aside(path)}")
    if version == 0 and tables:
        raise StoreError(path, f"not a capcheck store (a SQLite database with other tables: "
                               f"{', '.join(sorted(tables)[:4])}): {aside(path)}")
    if version >= 2 and CORE_TABLES - tables:
        missing = ", ".join(sorted(CORE_TABLES - tables))
        raise StoreError(path, f"not a capcheck store (schema {version} but no table {missing}): {aside(path)}")
    return version


def backup(db: sqlite3.Connection, path: Path, version: int) -> Path:
    """Copy the store with SQLite's backup API (consistent even with a WAL beside it)."""
    dest = path.with_name(f"{path.name}.bak-v{version}-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while dest.exists():
        n += 1
        dest = dest.with_name(f"{path.name}.bak-v{version}-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
    target = sqlite3.connect(dest)
    try:
        db.backup(target)
    finally:
        target.close()
    return dest


def migrate(db: sqlite3.Connection, path: Path, notes: list[str]) -> Path | None:
    """Bring the store to the newest schema, one transaction per migration; the backup made first, if any.
    What a person should hear of (a backup that could not be cleaned) is appended to `notes`."""
    version = check_schema(db, path)
    if version == len(MIGRATIONS):
        return None
    saved = backup(db, path, version) if version > 0 else None
    functions(db)
    db.execute("PRAGMA secure_delete=ON")
    for number, sql in enumerate(MIGRATIONS[version:], start=version + 1):
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(sql):
                db.execute(statement)
            db.execute(f"PRAGMA user_version={number}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    db.execute("PRAGMA secure_delete=OFF")
    if version > 0 and SCRUBS & set(range(version + 1, len(MIGRATIONS) + 1)):  # a new store has nothing to clean
        checkpoint(db)
        notes.extend(scrub_backups(path))
    return saved


def _statements(sql: str) -> list[str]:
    # executescript() would COMMIT our transaction; run statements one by one.
    # (A `--` comment ends at its line: strip them, a `;` inside one would split a statement.)
    lines = [line.split("--", 1)[0] for line in sql.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
