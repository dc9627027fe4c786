"""A store written before capcheck redacted `--base-url` loses the secrets it kept, and so do its backups.

Real SQLite files at the old schemas, written with `secure_delete` off (as python.org's SQLite
builds write them), opened by today's `Store`; the check is on the files' bytes, not only on what
a query returns: a secret left in a freed page is still on the disk someone shares."""

import json
import sqlite3
import time
from pathlib import Path

import pytest

from verifier.core.migrations import MIGRATIONS, _statements
from verifier.core.scrub import SCRUB, SCRUBS
from verifier.core.store import DB_NAME, STATE_DIR, Store
from verifier.core.urls import redact_args, redact_url
from verifier.core.writer import writing

VERIFY_URL = "http://alice:hunter2@gpu.local:8000/v1?key=SEKRIT-ONE&model=x"
FLEET = ["http://tok-alone@a.local:8000/v1", "http://b.local:8000/v1"]
QUOTED = "http://u:pa'ss-QUOTED@h.local/v1?key=ab\"SEKRIT-QUOTE"  # a quote inside a password and a key
# four long keys in one run: the row shrinks by a few hundred bytes, and what it gives back keeps
# the old text unless SQLite zeroes it
LONG = [f"http://h{i}.local/v1?key=LONGKEY{i}{'x' * 40}" for i in range(4)]
BATCH_URL = "https://proxy.example/v1?api_key=SEKRIT-TWO"
SECRETS = (b"hunter2", b"SEKRIT-ONE", b"tok-alone", b"QUOTED", b"SEKRIT-QUOTE", b"LONGKEY0", b"LONGKEY3",
           b"SEKRIT-TWO")
PLAIN = json.dumps({"backend": "openai", "base_url": "HTTP://Plain.local:8000/v1?", "concurrency": 6},
                   sort_keys=True)  # no secret: kept byte for byte, odd spelling and all
BUILD_ARGS = json.dumps({"policy": "examples/keichan/policy.yaml", "force": False})


def old_store(path: Path, version: int) -> None:
    """A store at schema `version` as capcheck then wrote it: runs whose args kept the URL as typed."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA secure_delete=OFF")
    for number, sql in enumerate(MIGRATIONS[:version], start=1):
        for statement in _statements(sql):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
    args = [BUILD_ARGS, {"backend": "openai", "base_url": VERIFY_URL, "concurrency": 6},
            {"backend": "openai", "base_url": FLEET}, {"base_url": QUOTED},
            {"base_url": LONG, "only": [f"*{i:05d}.png" for i in range(40)]}, PLAIN]
    for started, arg in enumerate(args):
        text = arg if isinstance(arg, str) else json.dumps(arg, sort_keys=True)
        db.execute("INSERT INTO runs(kind, started, args) VALUES ('verify', ?, ?)", (started, text))
    if version >= 4:
        db.execute("INSERT INTO batches(id, run_id, ts, base_url, backend, model, prompt_sha, input_file, status) "
                   "VALUES ('batch_1', 2, 2, ?, 'openai', 'm', 'p', 'in.jsonl', 'in_progress')", (BATCH_URL,))
    db.close()


def leaks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [secret for secret in SECRETS if secret in data]


def test_redact_args_hides_each_secret_and_keeps_what_holds_none():
    args = json.dumps({"base_url": [VERIFY_URL, "http://plain.local/v1"], "policy": "p.yaml"}, sort_keys=True)
    assert redact_args(args) == json.dumps({"base_url": [redact_url(VERIFY_URL), "http://plain.local/v1"],
                                            "policy": "p.yaml"}, sort_keys=True)
    assert redact_url(VERIFY_URL) == "http://alice:***@gpu.local:8000/v1?key=***&model=x"
    quoted = json.loads(redact_args(json.dumps({"base_url": QUOTED})))["base_url"]  # still JSON, and as at run time
    assert quoted == redact_url(QUOTED) and "QUOTED" not in quoted and "SEKRIT" not in quoted
    assert redact_args(PLAIN) == PLAIN
    assert redact_args("not json, http://u:pw@h/v1") == "***"  # cannot be read, so it cannot be kept
    assert redact_args("") == "" and redact_args(None) is None


def test_the_scrub_of_the_backups_is_the_migrations_own():
    assert set(SCRUBS) == {6} and sorted(SCRUB.values()) == sorted(_statements(MIGRATIONS[5]))


@pytest.mark.parametrize("version", [3, 5])
def test_an_old_store_and_its_backups_lose_the_secrets_and_keep_everything_else(tmp_path, version):
    state = tmp_path / STATE_DIR
    state.mkdir()
    store_path = state / DB_NAME
    old_store(store_path, version)
    older = state / f"{DB_NAME}.bak-v1-20261201-100000"  # made by an earlier migration, secrets and all
    old_store(older, 1)
    empty = state / f"{DB_NAME}.bak-v2-20261201-090000"  # not a database: left exactly as it is
    empty.write_bytes(b"")
    assert leaks(store_path) == list(SECRETS if version >= 4 else SECRETS[:-1])
    assert leaks(older) == list(SECRETS[:-1])

    with Store(tmp_path) as store:
        made = store.backup
        # while it is open too (a long run, a crash before its close): the cleaned pages are in the main
        # file, not only in the WAL beside the old ones
        assert not leaks(store_path) and not leaks(state / f"{DB_NAME}-wal")
        runs = [row["args"] for row in store.db.execute("SELECT args FROM runs ORDER BY started")]
        assert runs[0] == BUILD_ARGS and runs[5] == PLAIN  # no secret in them: byte for byte
        assert json.loads(runs[1]) == {"backend": "openai", "base_url": redact_url(VERIFY_URL), "concurrency": 6}
        assert json.loads(runs[2])["base_url"] == ["http://***@a.local:8000/v1", "http://b.local:8000/v1"]
        assert json.loads(runs[3])["base_url"] == redact_url(QUOTED)
        assert json.loads(runs[4])["base_url"] == [redact_url(url) for url in LONG]
        if version >= 4:  # looked up by the redacted URL its run sends: found again, not submitted twice
            assert [row["id"] for row in store.open_batches(redact_url(BATCH_URL), "openai", "m", "p")] == ["batch_1"]
    assert made is not None and made.name.startswith(f"{DB_NAME}.bak-v{version}-")

    assert empty.read_bytes() == b"" and store.notes == []
    for path in sorted(state.iterdir()):
        assert not leaks(path), f"{path.name} still holds {leaks(path)}"
    for path, schema in ((made, version), (older, 1)):  # each backup still a way back, at its own schema
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == schema
        rows = [row[0] for row in db.execute("SELECT args FROM runs ORDER BY started")]
        assert len(rows) == 6 and rows[0] == BUILD_ARGS and redact_url(VERIFY_URL) in rows[1]
        db.close()


def test_a_backup_that_cannot_be_written_is_left_and_the_store_opens(tmp_path):
    """A backup another process holds locked (as a read-only file would refuse it, whoever runs the
    tests: root writes read-only files): left as it is, said in one line, and the store, already
    migrated, opens."""
    state = tmp_path / STATE_DIR
    state.mkdir()
    old_store(state / DB_NAME, 5)
    locked = state / f"{DB_NAME}.bak-v4-20261201-090000"
    old_store(locked, 4)
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    notes: list[str] = []
    try:
        before = locked.read_bytes()
        with writing(tmp_path, "build", notes.append) as store:  # a writer says what the opening found
            assert store.version == len(MIGRATIONS)
        assert locked.read_bytes() == before
        assert notes == [f"{locked}: this backup may still hold the --base-url secrets an older capcheck stored, "
                         "and it could not be cleaned (database is locked); delete it before sharing the dataset"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_a_reader_of_the_old_store_does_not_hold_the_open_up(tmp_path):
    """Another process reading the store (an older capcheck, a review page) keeps SQLite from
    truncating the WAL; the open does not wait out the 30 s busy timeout for it."""
    state = tmp_path / STATE_DIR
    state.mkdir()
    path = state / DB_NAME
    old_store(path, 5)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("PRAGMA journal_mode=WAL")
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM runs").fetchone()
    try:
        t0 = time.monotonic()
        with Store(tmp_path) as store:
            assert store.version == len(MIGRATIONS)
        took = time.monotonic() - t0
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert took < 10, f"the open waited {took:.1f} s on a reader"
    with Store(tmp_path):
        pass
    assert not [p.name for p in state.iterdir() if p.name.startswith(DB_NAME) and leaks(p)]
