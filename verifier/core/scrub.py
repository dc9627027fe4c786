"""Secrets out of a store and its backups: what the scrub migrations (migrations.py) run.

Stores written before capcheck redacted `--base-url` kept it as typed, a
password or `?key=` included; a dataset folder is often shared, and its
`.capcheck/` with it. The migration rewrites those columns with the
functions `functions` registers (`urls.redact_args`, `urls.redact_url`);
`checkpoint` gets the cleaned pages into the main file at once;
`scrub_backups` cleans the copies made before migrations.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from verifier.core.urls import redact_args, redact_url

SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database (migrations.check_file too)

# The migrations that clean secrets out. A store's backup is a copy of it as it was, secrets and all,
# so after one of these the backups beside the store are cleaned the same way (`scrub_backups`), each
# statement where its table exists (`batches` is from schema 4).
# They run with SQLite's `secure_delete` on, which zeroes what a changed row frees (a shortened cell's
# old bytes, an overflow page given back): Debian builds SQLite with it on, python.org's builds do not.
SCRUB = {
    "runs": "UPDATE runs SET args = capcheck_redact_args(args) WHERE args LIKE '%://%'",
    "batches": "UPDATE batches SET base_url = capcheck_redact_url(base_url) WHERE base_url LIKE '%://%'",
}
SCRUBS = frozenset({6})


def checkpoint(db: sqlite3.Connection) -> None:
    """Copy the cleaned pages over the old ones in the main file now, and empty the WAL (a run that
    crashed may have left the old rows there too), if no other process is reading the store: one that
    is (an older capcheck, a review page) would make this wait out the busy timeout with the open lock
    held. Then SQLite's own next checkpoint does it, at the latest when the last connection closes."""
    (timeout,) = db.execute("PRAGMA busy_timeout").fetchone()
    db.execute("PRAGMA busy_timeout=0")
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        db.execute(f"PRAGMA busy_timeout={int(timeout)}")


def functions(db: sqlite3.Connection) -> None:
    db.create_function("capcheck_redact_args", 1, redact_args, deterministic=True)
    db.create_function("capcheck_redact_url", 1, redact_url, deterministic=True)


def scrub_backups(path: Path) -> list[str]:
    """Clean every backup beside the store as the scrub migrations cleaned the store, each kept at
    its own schema version (still a way back). A backup SQLite cannot write (read-only, locked,
    damaged) is left as it is, and the store, already migrated, opens all the same: one note each,
    the returned lines. A file that is not a SQLite database at all is not a backup to clean."""
    left = []
    for copy in sorted(path.parent.glob(f"{path.name}.bak-*")):
        try:
            with open(copy, "rb") as fh:
                if fh.read(len(SQLITE_HEADER)) != SQLITE_HEADER:  # SQLite would make an empty file a database
                    continue
            db = sqlite3.connect(copy, isolation_level=None, timeout=1)  # held by another process: leave it
        except (OSError, sqlite3.Error) as exc:
            left.append(_left(copy, exc))
            continue
        try:
            functions(db)
            db.execute("PRAGMA secure_delete=ON")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            db.execute("BEGIN IMMEDIATE")
            for table, statement in SCRUB.items():
                if table in tables:
                    db.execute(statement)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            left.append(_left(copy, exc))
        finally:
            db.close()
    return left


def _left(copy: Path, exc: Exception) -> str:
    why = getattr(exc, "strerror", None) or str(exc)
    return (f"{copy}: this backup may still hold the --base-url secrets an older capcheck stored, and it "
            f"could not be cleaned ({why}); delete it before sharing the dataset")
