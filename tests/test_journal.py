import pytest

from captions.errors import CaptionWriteError
from captions.journal import atomic_write, write_caption


class ListJournal:
    def __init__(self, *paths):
        self.rows, self.finished = [], []
        self.path_of = {p.name: p for p in paths}

    def record(self, path, before, after, reason):
        # The journal must be written before the file changes.
        assert (path.read_text() if path.exists() else None) == before
        self.rows.append((path.name, before, after, reason))
        return len(self.rows) - 1

    def done(self, token):
        # ... and marked done only once the file holds the new text.
        name, _, after, _ = self.rows[token]
        assert (self.path_of[name].read_text() if self.path_of[name].exists() else None) == after
        self.finished.append(token)


def test_write_is_journaled_before_the_rename(tmp_path):
    path = tmp_path / "a.txt"
    journal = ListJournal(path)
    assert write_caption(path, "one\n", journal, "build")
    assert write_caption(path, "two\n", journal, "apply")
    assert not write_caption(path, "two\n", journal, "apply")  # unchanged: nothing written, nothing journaled
    assert journal.rows == [("a.txt", None, "one\n", "build"), ("a.txt", "one\n", "two\n", "apply")]
    assert journal.finished == [0, 1]
    assert path.read_text() == "two\n"


def test_changed_on_disk_is_not_overwritten(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("hand edit\n")
    with pytest.raises(CaptionWriteError, match="changed on disk"):
        write_caption(path, "new\n", None, "apply", expect="old\n")
    assert path.read_text() == "hand edit\n"


def test_atomic_write_leaves_no_temp_files_and_keeps_bytes(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write(path, "crlf\r\nkept\r\n")
    assert path.read_bytes() == b"crlf\r\nkept\r\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_write_failure_names_the_file(tmp_path):
    missing = tmp_path / "no" / "such" / "dir" / "a.txt"
    with pytest.raises(CaptionWriteError) as info:
        atomic_write(missing, "x")
    assert str(missing) in str(info.value)
