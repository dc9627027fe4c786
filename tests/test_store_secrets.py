"""A store written before capcheck redacted `--base-url` loses the secrets it kept, and so do its backups.

Real SQLite files at the old schemas, opened by today's `Store`; the check is on the files' bytes,
not only on what a query returns: a secret left in a freed page is still on the disk someone shares."""

import json
import sqlite3
from pathlib import Path

from verifier.core.migrations import MIGRATIONS, SCRUBS, _statements
from verifier.core.store import DB_NAME, STATE_DIR, Store
from verifier.core.urls import redact_text, redact_url

SECRETS = (b"hunter2", b"SEKRIT-ONE", b"SEKRIT-TWO", b"tok-alone")
VERIFY_URL = "http://alice:hunter2@gpu.local:8000/v1?key=SEKRIT-ONE&model=x"
FLEET = ["http://tok-alone@a.local:8000/v1", "http://b.local:8000/v1"]
BATCH_URL = "https://proxy.example/v1?api_key=SEKRIT-TWO"
BUILD_ARGS = json.dumps({"policy": "examples/keichan/policy.yaml", "force": False})


def old_store(path: Path, version: int) -> None:
    """A store at schema `version` as capcheck then wrote it: runs whose args kept the URL as typed."""
    db = sqlite3.connect(path, isolation_level=None)
    for number, sql in enumerate(MIGRATIONS[:version], start=1):
        for statement in _statements(sql):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
    db.execute("INSERT INTO runs(kind, started, args) VALUES ('build', 0, ?)", (BUILD_ARGS,))
    db.execute("INSERT INTO runs(kind, started, args) VALUES ('verify', 1, ?)",
               (json.dumps({"backend": "openai", "base_url": VERIFY_URL, "concurrency": 6}, sort_keys=True),))
    db.execute("INSERT INTO runs(kind, started, args) VALUES ('verify', 2, ?)",
               (json.dumps({"backend": "openai", "base_url": FLEET}, sort_keys=True),))
    # longer than a page (`--only` with many patterns): its text runs on into overflow pages
    db.execute("INSERT INTO runs(kind, started, args) VALUES ('verify', 3, ?)",
               (json.dumps({"base_url": VERIFY_URL, "only": [f"*{i:05d}.png" for i in range(600)]}),))
    if version >= 4:
        db.execute("INSERT INTO batches(id, run_id, ts, base_url, backend, model, prompt_sha, input_file, status) "
                   "VALUES ('batch_1', 2, 2, ?, 'openai', 'm', 'p', 'in.jsonl', 'in_progress')", (BATCH_URL,))
    db.close()


def test_redact_text_redacts_each_url_inside_stored_json_and_keeps_the_rest():
    args = json.dumps({"base_url": [VERIFY_URL, "http://plain.local/v1"], "policy": "p.yaml"})
    assert json.loads(redact_text(args)) == {"base_url": [redact_url(VERIFY_URL), "http://plain.local/v1"],
                                             "policy": "p.yaml"}
    assert redact_url(VERIFY_URL) == "http://alice:***@gpu.local:8000/v1?key=***&model=x"
    assert redact_text(BUILD_ARGS) == BUILD_ARGS
    assert redact_text("") == "" and redact_text(None) is None


def test_an_old_store_and_its_backups_lose_the_secrets_and_keep_everything_else(tmp_path):
    assert len(MIGRATIONS) in SCRUBS  # the newest migration is the scrub this test is about
    state = tmp_path / STATE_DIR
    state.mkdir()
    store_path = state / DB_NAME
    old_store(store_path, len(MIGRATIONS) - 1)
    older = state / f"{DB_NAME}.bak-v3-20261201-100000"  # made by an earlier migration, secrets and all
    old_store(older, 3)
    for path in (store_path, older):
        assert all(secret in path.read_bytes() for secret in SECRETS[:2])

    with Store(tmp_path) as store:
        made = store.backup
        runs = {row["started"]: row["args"] for row in store.db.execute("SELECT started, args FROM runs")}
        assert runs[0] == BUILD_ARGS  # no URL in it: byte for byte
        assert json.loads(runs[1]) == {"backend": "openai", "base_url": redact_url(VERIFY_URL), "concurrency": 6}
        assert json.loads(runs[2])["base_url"] == ["http://***@a.local:8000/v1", "http://b.local:8000/v1"]
        # a batch is looked up by the redacted URL its run now sends: the old one is found again, not resubmitted
        assert [row["id"] for row in store.open_batches(redact_url(BATCH_URL), "openai", "m", "p")] == ["batch_1"]
    assert made is not None and made.name.startswith(f"{DB_NAME}.bak-v{len(MIGRATIONS) - 1}-")

    files = sorted(state.iterdir())
    assert made in files and older in files
    for path in files:
        data = path.read_bytes()
        assert not [s for s in SECRETS if s in data], f"{path.name} still holds a secret"
    for path, version in ((made, len(MIGRATIONS) - 1), (older, 3)):  # each backup still a way back, at its schema
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA user_version").fetchone()[0] == version
        assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
        assert redact_url(VERIFY_URL) in db.execute("SELECT args FROM runs WHERE started = 1").fetchone()[0]
        db.close()


def test_a_backup_sqlite_cannot_read_is_left_as_it_is_and_the_store_opens(tmp_path):
    state = tmp_path / STATE_DIR
    state.mkdir()
    old_store(state / DB_NAME, len(MIGRATIONS) - 1)
    junk = state / f"{DB_NAME}.bak-v2-20261201-090000"
    junk.write_bytes(b"not a database, whatever it was\n" * 10)
    before = junk.read_bytes()
    with Store(tmp_path) as store:
        assert store.version == len(MIGRATIONS)
    assert junk.read_bytes() == before

