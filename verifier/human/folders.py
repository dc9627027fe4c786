"""The review folders' shared parts: names, placing files, finding the dataset image.

`route` (per aspect and for tags) puts images into folders and `ingest`
reads them back; both use these, and what each did is said with the
result types here (`Routed`, `Ingested`). Living below both, they let
`route`, `ingest` and `tag_review` import each other's public parts only
one way (route and ingest hand tags to tag_review; tag_review needs
neither).
"""

from __future__ import annotations

import os
import shutil
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from captions.dataset import iter_images, link_problem
from verifier.core.images import sha256_file
from verifier.core.store import Store
from verifier.errors import VerifierError

UNSURE = "_unsure"
MODES = ("link", "copy", "move")


def folder_name(value: str) -> str:
    return value.replace(" ", "_")


class IngestConflict(VerifierError):
    """The same image was sorted into two different values; nothing was written."""


@dataclass
class Routed:
    folder: Path  # DIR/<aspect>
    placed: list[tuple[str, str, Path]] = field(default_factory=list)  # (image, folder value, destination)
    already: list[str] = field(default_factory=list)  # images already there from an earlier route
    copied_instead: int = 0  # hard links that failed (another file system)


@dataclass
class Ingested:
    changed: Counter = field(default_factory=Counter)  # (caption said, person said) -> n
    unchanged: int = 0
    unknown_folders: dict[str, int] = field(default_factory=dict)  # folder -> images in it
    unsure: int = 0
    not_found: list[str] = field(default_factory=list)  # sorted files matching no dataset image
    no_caption: list[str] = field(default_factory=list)
    diffs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed_count(self) -> int:
        return sum(self.changed.values())

    def summary(self, aspect: str) -> list[str]:
        """What was done, in the words `capcheck ingest` prints (the review page shows these)."""
        lines = [f"{aspect}: changed {self.changed_count}, unchanged {self.unchanged}"]
        lines += [f"  {said} -> {now} × {n}" for (said, now), n in self.changed.most_common()]
        lines += [f"not a value of {aspect}: {folder}/ ({n} image(s) left alone)"
                  for folder, n in sorted(self.unknown_folders.items())]
        lines += [f"no caption next to {image} (move its .txt with it)" for image in self.no_caption]
        lines += [f"not in the dataset: {image}" for image in self.not_found]
        if self.unsure:
            lines.append(f"still in _unsure/: {self.unsure} (move them to a value folder to decide)")
        return lines + [f"note: {note}" for note in self.notes]


def free_name(folder: Path, source: Path) -> Path | None:
    """`folder/name`, or `name__2` … when another file holds it; None when
    this very image is already there (route run twice)."""
    candidate, n = folder / source.name, 1
    while candidate.exists():
        if os.path.samefile(candidate, source) or _same_bytes(candidate, source):
            return None
        n += 1
        candidate = folder / f"{source.stem}__{n}{source.suffix}"
    return candidate


def _same_bytes(a: Path, b: Path) -> bool:
    return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()


def place(source: Path, dest: Path, mode: str) -> int:
    """Returns 1 when a hard link had to become a copy."""
    if mode == "move":
        shutil.move(source, dest)
        return 0
    if mode == "link":
        try:
            os.link(source, dest)
            return 0
        except OSError:
            pass
    shutil.copy2(source, dest)
    return 1 if mode == "link" else 0


def inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def dataset_index(root: Path, store: Store) -> dict[str, list[Path]]:
    """image sha -> the dataset images with those bytes (duplicates: several)."""
    index: dict[str, list[Path]] = defaultdict(list)
    for item in iter_images(root):
        # A broken link (a loop, dangling, outside the dataset) or an unreadable file is no image a sorted copy
        # can stand for: verify names it in one line; here it is only not indexed (it was a traceback).
        if link_problem(item.image, root) is not None:
            continue
        try:
            index[store.file_sha(item.image, sha256_file)].append(item.image)
        except OSError:
            continue
    return index
