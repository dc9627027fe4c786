"""A writer's store: the dataset lock first, then what a crash left settled.

Every command that writes a dataset opens the store through `writing`:
the lock (captions/lock.py) keeps a second writer out, and only then is it
safe to settle the journal's pending intents (captions/journal.py's crash
protocol), since no other process can be between its own intent and its
rename. Settling beside a live writer would drop that writer's intent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from captions.dataset import SKIP_DIRS
from captions.journal import orphaned_temps, recover_intent
from captions.lock import DatasetLock
from verifier.core.store import Store


@contextmanager
def writing(root: Path, command: str, on_note: Callable[[str], None]) -> Iterator[Store]:
    """The store of a command that writes the dataset: the dataset lock held
    (a second writer waits, then refuses), and what a crash left settled
    first (`recover`), each thing it did said on `on_note`, after what the
    store's opening had to say (`Store.notes`: a migration's)."""
    with DatasetLock(root, command, on_wait=on_note), Store(root) as store:
        for note in store.notes + recover(store):
            on_note(note)
        yield store


def recover(store: Store) -> list[str]:
    """Settle what a crash left: each pending intent is marked done or
    dropped by what its file holds, and orphaned temp files are removed.
    Only under the dataset lock. One note per thing a person should hear of."""
    notes, settled, dropped = [], 0, 0
    for row in store.db.execute("SELECT * FROM journal WHERE state='pending' ORDER BY id").fetchall():
        after = None if row["deletes"] else row["after"]
        found = recover_intent(store.root / row["path"], row["before"], after)
        if found == "done":
            store.done(row["id"])
            settled += 1
        elif found == "rolled back":
            store.db.execute("DELETE FROM journal WHERE id=?", (row["id"],))
            dropped += 1
        else:
            notes.append(f"{row['path']}: a write of run {row['run_id']} ({row['reason']}) was cut off, and the "
                         "caption now holds neither its text before nor after (edited since?); left as it is")
    if settled or dropped:
        notes.append(f"recovered from an interrupted run: {settled} caption write(s) had happened (journal "
                     f"marked done), {dropped} had not (journal entry dropped)")
    temps = orphaned_temps(store.root, SKIP_DIRS)
    for tmp in temps:
        tmp.unlink(missing_ok=True)
    if temps:
        notes.append(f"removed {len(temps)} temporary file(s) an interrupted write left "
                     f"({', '.join(store.rel(t) for t in temps[:3])}{' …' if len(temps) > 3 else ''})")
    return notes
