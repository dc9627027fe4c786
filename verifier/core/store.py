"""The store: `DATASET/.capcheck/capcheck.db` (SQLite, WAL, numbered migrations).

It is capcheck's only state. This module opens it, migrates it, keeps the
caption journal (before/after text of every caption write, so any write can
be undone), the file-hash cache, and the verdicts: one row per (image
sha256, caption sha256, prompt sha256, backend, model), written the moment
an answer arrives, so a killed run loses only the requests in flight.

The schema and the checks that refuse a file that is not a store are
`migrations.py`. Every SQLite failure (a full disk, a damaged file) leaves
here as a `StoreError` naming the file: SQLite has rolled the statement
back, so nothing is half-written, and the person reads one line, not a
traceback. The journal's crash protocol is `captions/journal.py`'s; its
recovery is `writer.py`'s, under the dataset lock, never beside a writer.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from captions.journal import read_caption
from captions.lock import held
from verifier.core.migrations import MIGRATIONS as MIGRATIONS  # re-exported: the schema's home is migrations.py
from verifier.core.migrations import aside, check_file, check_schema, migrate
from verifier.errors import StoreError

STATE_DIR = ".capcheck"
DB_NAME = "capcheck.db"

VERDICT_COLUMNS = ("run_id", "ts", "image", "image_sha", "caption_sha", "prompt_sha", "backend", "model", "protocol",
                   "status", "fixes", "observation", "claims", "reason", "attempts", "latency_s", "raw",
                   "prompt_tokens", "completion_tokens", "derived_from", "total_tokens")


def store_error(path: Path, exc: sqlite3.Error) -> StoreError:
    """One line for a SQLite failure, saying what to do about its kind."""
    text = str(exc)
    if "full" in text or "disk I/O" in text:
        return StoreError(path, f"cannot write the store ({text}): free some disk space and run again "
                                "(the last change was rolled back; nothing is half-written)")
    if "readonly" in text:
        return StoreError(path, f"cannot write the store ({text}): make the file and its folder writable")
    if "locked" in text or "busy" in text:
        return StoreError(path, f"the store is busy ({text}): another program holds it; run again when it is done")
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError | sqlite3.IntegrityError
                                                                 | sqlite3.ProgrammingError):
        return StoreError(path, f"the store is damaged ({text}): {aside(path)}")
    return StoreError(path, f"store: {text}")


class _Connection:
    """sqlite3.Connection, with every failure a StoreError naming the file."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self._db, self._path = db, path

    def execute(self, sql: str, params=()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.Error as exc:
            raise store_error(self._path, exc) from None

    def executemany(self, sql: str, rows) -> sqlite3.Cursor:
        try:
            return self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise store_error(self._path, exc) from None

    def __enter__(self) -> _Connection:
        self._db.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._db.__exit__(*exc)
        except sqlite3.Error as error:
            raise store_error(self._path, error) from None

    def __getattr__(self, name: str):
        return getattr(self._db, name)


@contextmanager
def _opening(state: Path) -> Iterator[None]:
    """One process at a time checks, creates and migrates the store. Without it,
    two that open a new dataset at once (the ranks of a data-parallel train, which
    read the store without the dataset lock) race: the second sees the 0-byte
    file SQLite has just made, which `check_file` rightly refuses, or runs a
    migration the first already ran. Held for the open only, never for a run."""
    lock = state / "store-open.lock"
    try:
        lock.touch(exist_ok=True)
    except OSError:  # a read-only state folder: nothing can create a store there anyway
        yield
        return
    with held(lock):
        yield


class Store:
    def __init__(self, dataset: Path):
        self.root = Path(dataset).resolve()
        self.hashed = 0  # files hashed afresh by file_sha (not found in the cache), since opening
        state = self.root / STATE_DIR
        self.path = state / DB_NAME
        try:
            state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(state, f"cannot make the state folder: {exc.strerror or exc}") from None
        self.backup: Path | None = None  # the copy made before a migration, when one ran
        self.notes: list[str] = []  # what the opening found a person should hear of (`writing` says it)
        with _opening(state):
            self._open()
        self.run_id: int | None = None

    def _open(self) -> None:
        check_file(self.path)
        try:
            raw = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc) from None
        self.db = _Connection(raw, self.path)
        try:
            raw.row_factory = sqlite3.Row
            try:  # before anything writes to it: switching to WAL rewrites the header of whatever file it is
                check_schema(raw, self.path)
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from None
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            try:
                self.backup = migrate(raw, self.path, self.notes)
            except sqlite3.Error as exc:
                raise store_error(self.path, exc) from None
        except BaseException:
            raw.close()
            raise

    @property
    def version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def start_run(self, kind: str, args: str = "") -> int:
        cur = self.db.execute("INSERT INTO runs(kind, started, args) VALUES (?, ?, ?)", (kind, time.time(), args))
        self.run_id = cur.lastrowid
        return self.run_id

    # captions.journal.Journal: intent (pending), then the caller renames, then done
    def record(self, path: Path, before: str | None, after: str | None, reason: str) -> int:
        """Commit the intent to write `after` (None: to remove the file); returns its row id."""
        if self.run_id is None:
            self.start_run(reason)
        # The intent must be on disk before the rename, power cut included: WAL's NORMAL
        # would let the commit vanish while the rename stays. FULL for this commit only
        # (one fsync per caption; a verdict keeps NORMAL: a lost one is asked again).
        self.db.execute("PRAGMA synchronous=FULL")
        try:
            cur = self.db.execute(
                "INSERT INTO journal(run_id, ts, path, before, after, reason, state, deletes) "
                "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?)",
                (self.run_id, time.time(), self.rel(path), before, after or "", reason, int(after is None)),
            )
        finally:
            self.db.execute("PRAGMA synchronous=NORMAL")
        return cur.lastrowid

    def done(self, token: object) -> None:
        self.db.execute("UPDATE journal SET state='done' WHERE id=?", (token,))

    def last_writer(self, path: Path) -> str | None:
        """The kind of run ('apply', 'ingest', ...) whose journaled write left the
        caption's current text; None if no journaled write did (a hand edit)."""
        row = self.db.execute("SELECT r.kind, j.after FROM journal j JOIN runs r ON r.id = j.run_id WHERE j.path=? "
                              "AND j.state='done' ORDER BY j.id DESC LIMIT 1", (self.rel(path),)).fetchone()
        return row["kind"] if row is not None and row["after"] == read_caption(path) else None

    def applied_over(self, path: Path, now: str) -> list[str]:
        """The texts an apply run (not undone) replaced with `now`, the caption's
        current text: when one is what a report verified, that fix is done (a
        second apply of the same report), not stale."""
        rows = self.db.execute(
            "SELECT j.before FROM journal j JOIN runs r ON r.id = j.run_id WHERE j.path=? AND j.state='done' "
            "AND r.kind='apply' AND r.undone_by IS NULL AND j.after=? AND j.before IS NOT NULL",
            (self.rel(path), now)).fetchall()
        return [r[0] for r in rows]

    def journal(self, run_id: int | None = None) -> list[sqlite3.Row]:
        """Done writes (a pending intent is settled, or named, by `writer.recover`)."""
        if run_id is None:
            return self.db.execute("SELECT * FROM journal WHERE state='done' ORDER BY id").fetchall()
        return self.db.execute("SELECT * FROM journal WHERE run_id=? AND state='done' ORDER BY id",
                               (run_id,)).fetchall()

    # -- file hashes ---------------------------------------------------------

    def file_sha(self, path: Path, hasher, rel: str | None = None) -> str:
        """sha256 of `path`, from the cache while its size and mtime are unchanged (`rel`: its
        `self.rel(path)`, when the caller has it: resolving a path is a system call per component)."""
        rel = rel or self.rel(path)
        st = os.stat(path)
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM files WHERE path=?", (rel,)).fetchone()
        if row is not None and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            return row["sha256"]
        sha = hasher(path)
        self.db.execute("INSERT OR REPLACE INTO files(path, size, mtime_ns, sha256) VALUES (?, ?, ?, ?)",
                        (rel, st.st_size, st.st_mtime_ns, sha))
        self.hashed += 1
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
            "AND EXISTS (SELECT 1 FROM journal j WHERE j.run_id = r.id AND j.state='done') "
            "ORDER BY r.id DESC").fetchall()

    def run(self, run_id: int) -> sqlite3.Row | None:
        return self.db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()

    def mark_undone(self, run_id: int, by: int) -> None:
        self.db.execute("UPDATE runs SET undone_by=? WHERE id=?", (by, run_id))

    # -- batch jobs ------------------------------------------------------------

    def add_batch(self, batch_id: str, *, base_url: str | None, backend: str, model: str, prompt_sha: str,
                  input_file: str, status: str, custom_ids: list[str]) -> None:
        """Record a batch and its lines in one transaction, right after it was created."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "INSERT INTO batches(id, run_id, ts, base_url, backend, model, prompt_sha, input_file, status) "
                "VALUES (?,?,?,?,?,?,?,?,?)",
                (batch_id, self.run_id, time.time(), base_url, backend, model, prompt_sha, input_file, status))
            self.db.executemany("INSERT INTO batch_lines(batch_id, custom_id) VALUES (?, ?)",
                                [(batch_id, c) for c in custom_ids])

    def open_batches(self, base_url: str | None, backend: str, model: str, prompt_sha: str) -> list[sqlite3.Row]:
        """Batches submitted for this question and not collected yet, oldest first."""
        return self.db.execute(
            "SELECT * FROM batches WHERE base_url IS ? AND backend=? AND model=? AND prompt_sha=? "
            "AND collected IS NULL ORDER BY ts", (base_url, backend, model, prompt_sha)).fetchall()

    def batch_lines(self, batch_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT custom_id FROM batch_lines WHERE batch_id=?", (batch_id,))]

    def update_batch(self, batch_id: str, status: str, collected: bool = False) -> None:
        self.db.execute("UPDATE batches SET status=?, collected=? WHERE id=?",
                        (status, time.time() if collected else None, batch_id))

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


