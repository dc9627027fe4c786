import sqlite3

from verifier.core.store import MIGRATIONS, Store


def test_store_migrates_once_and_uses_wal(tmp_path):
    with Store(tmp_path) as store:
        assert store.version == len(MIGRATIONS)
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Store(tmp_path) as store:  # reopening does not re-run migrations
        assert store.version == len(MIGRATIONS)
    assert (tmp_path / ".capcheck" / "capcheck.db").exists()


def test_journal_rows_are_relative_and_survive_reopen(tmp_path):
    caption = tmp_path / "sub dir" / "名前.txt"
    caption.parent.mkdir()
    with Store(tmp_path) as store:
        run = store.start_run("build")
        store.done(store.record(caption, None, "after\n", "build"))
    with Store(tmp_path) as store:
        rows = store.journal(run)
    assert [(r["path"], r["before"], r["after"], r["reason"]) for r in rows] == [
        ("sub dir/名前.txt", None, "after\n", "build")]
    # a plain sqlite3 reader sees the same (the file is the interface)
    assert sqlite3.connect(tmp_path / ".capcheck" / "capcheck.db").execute("SELECT count(*) FROM journal").fetchone() == (1,)
