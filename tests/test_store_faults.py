"""A store that is not one: refused with one line, never started over; a
migration backs the store up first; a report that exists is never overwritten.

Driven through the `capcheck` CLI (subprocess) on real files and real SQLite."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from verifier.core.migrations import MIGRATIONS, _statements
from verifier.core.store import DB_NAME, STATE_DIR, Store
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES, error_lines

ROOT = Path(__file__).resolve().parent.parent
POLICY = EXAMPLES / "keichan" / "policy.yaml"


def capcheck(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def db_path(root: Path) -> Path:
    return root / STATE_DIR / DB_NAME


def a_store_with_history(root: Path) -> bytes:
    """`capcheck build` journaled every caption: the undo history a bad open must not lose."""
    for txt in root.rglob("*.txt"):
        txt.unlink()
    proc = capcheck("build", root, "--policy", POLICY)
    assert proc.returncode == 0, proc.stderr
    with Store(root):
        pass  # checkpointed into the main file
    return db_path(root).read_bytes()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def foreign(path: Path) -> None:
    path.unlink()  # another program's database in its place
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()


def newer(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 7}")
    db.close()


CASES = {
    "empty": (lambda p: p.write_bytes(b""), "empty (0 bytes)"),
    "junk": (lambda p: p.write_bytes(b"\x00junk, not a database\n" * 200), "not a SQLite database"),
    "half-written": (lambda p: p.write_bytes(truncated(p.read_bytes())), "damaged"),
    "another program's": (foreign, "not a capcheck store (a SQLite database with other tables: photos)"),
    "newer schema": (newer, "newer than this capcheck knows"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_store_that_is_not_one_is_refused_with_one_line_and_left_as_it_is(example_dataset, case):
    spoil, says = CASES[case]
    a_store_with_history(example_dataset)
    path = db_path(example_dataset)
    for extra in ("-wal", "-shm"):
        path.with_name(path.name + extra).unlink(missing_ok=True)
    spoil(path)
    spoiled = path.read_bytes()
    for command in (("undo", example_dataset), ("build", example_dataset, "--policy", POLICY)):
        proc = capcheck(*command)
        assert proc.returncode == 2, f"{command[0]}: {proc.stdout}{proc.stderr}"
        assert "Traceback" not in proc.stderr and len(error_lines(proc.stderr)) == 1, proc.stderr
        line = error_lines(proc.stderr)[0]
        assert line.startswith(f"error: {path}: ") and says in line and "move it aside" in line, line
        assert path.read_bytes() == spoiled  # never a fresh store laid over it


def test_a_refusal_names_the_newest_backup_to_restore(example_dataset):
    a_store_with_history(example_dataset)
    path = db_path(example_dataset)
    (path.parent / f"{DB_NAME}.bak-v4-20261201-100000").write_bytes(path.read_bytes())
    path.write_bytes(b"")
    line = capcheck("undo", example_dataset).stderr.strip()
    assert f"restore the newest backup (cp {DB_NAME}.bak-v4-20261201-100000 {DB_NAME})" in line, line


def test_a_migration_backs_the_store_up_first_with_its_history(example_dataset):
    """A store written by the previous schema (4): migrated, and the copy beside it holds every row."""
    path = db_path(example_dataset)
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path, isolation_level=None)
    for number, sql in enumerate(MIGRATIONS[:4], start=1):
        for statement in _statements(sql):
            db.execute(statement)
        db.execute(f"PRAGMA user_version={number}")
    db.execute("INSERT INTO runs(kind, started) VALUES ('build', 0)")
    db.execute("INSERT INTO journal(run_id, ts, path, before, after, reason) VALUES (1, 0, 'a.txt', NULL, 'x', 'b')")
    db.close()
    proc = capcheck("undo", example_dataset, "--dry-run", "--run", "1", "--delete-created")
    assert proc.returncode == 0 and "would delete 1" in proc.stdout, proc.stdout + proc.stderr
    backups = list(path.parent.glob(f"{DB_NAME}.bak-v4-*"))
    assert len(backups) == 1
    old = sqlite3.connect(backups[0])
    assert old.execute("PRAGMA user_version").fetchone()[0] == 4
    assert old.execute("SELECT path, after FROM journal").fetchall() == [("a.txt", "x")]
    old.close()
    with Store(example_dataset) as store:
        assert store.version == len(MIGRATIONS) and store.backup is None  # migrated once, backed up once
    assert len(list(path.parent.glob(f"{DB_NAME}.bak-*"))) == 1


def test_a_report_that_exists_is_never_overwritten(clothed47_dataset, keichan):
    """The store moved aside, verify starts again at run 1: run-0001's report stays as it was."""
    model = DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)
    reports = clothed47_dataset / STATE_DIR / "reports"
    with DemoServer(model) as server:
        args = ("verify", clothed47_dataset, "--policy", POLICY, "--model", "demo-vision", "--base-url", server.url,
                "--only", "*02000?.png")
        first = capcheck(*args)
        assert first.returncode == 0, first.stderr
        kept = {p.name: p.read_bytes() for p in reports.glob("run-*")}
        assert "run-0001.jsonl" in kept and "run-0001.html" in kept
        path = db_path(clothed47_dataset)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        second = capcheck(*args, "--aspects", "framing")
    assert second.returncode == 0, second.stderr
    assert {name: (reports / name).read_bytes() for name in kept} == kept
    newest = json.loads((reports / "latest.jsonl").read_text().splitlines()[0])
    assert newest["run"] == 1 and (reports / "run-0002.jsonl").read_bytes() == (reports / "latest.jsonl").read_bytes()
    assert "run-0002.html" in second.stdout


def _open_store(root: str) -> None:
    from verifier.core.store import Store

    with Store(Path(root)) as store:
        store.start_run("open")


def test_processes_opening_a_new_store_at_once_all_get_it_whole(tmp_path):
    """The ranks of a data-parallel train open the store at the same moment, without the dataset lock: the
    second used to find the 0-byte file SQLite had just made and refuse it (a rank exiting 2), or ran a
    migration twice. Real child processes, started together, on fresh folders."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    for attempt in range(4):
        root = tmp_path / f"fresh{attempt}"
        root.mkdir()
        children = [context.Process(target=_open_store, args=(str(root),)) for _ in range(4)]
        for child in children:
            child.start()
        for child in children:
            child.join(60)
        assert [child.exitcode for child in children] == [0, 0, 0, 0], attempt
        with sqlite3.connect(root / ".capcheck" / "capcheck.db") as db:
            assert db.execute("SELECT count(*) FROM runs WHERE kind = 'open'").fetchone()[0] == 4
