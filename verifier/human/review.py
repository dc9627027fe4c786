"""The review folders as data: what waits for a person, and moving it.

`route` put the images that need eyes into `DATASET/_review/<aspect>/<value>/`.
This module reads that tree the way a person sees it in Finder (folders are
the truth: nothing is cached between calls, so a move made elsewhere shows
at once), says for each image what its caption claims and what the model
called it, and moves an image into another value's folder exactly as a
person would: the file is renamed on disk, with whatever sits beside it
under the same name (`.txt`, `.json`). Answers still come in one way only:
`ingest`, run on the same folders (`ingest_all`).

The page in the browser (`review_page.py`) is a faster pair of hands over
this; every path it sends is checked here, inside the review folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from captions.caption import parse
from captions.dataset import IMAGE_EXTS
from captions.facts import facts_from_caption
from captions.journal import read_caption
from captions.policy import Policy, squash
from verifier.core.images import sha256_file
from verifier.core.report import read_report, refresh_latest_page, reports_dir
from verifier.core.verdict import ERROR, REFUSED
from verifier.core.writer import writing
from verifier.errors import ReportError, VerifierError
from verifier.human.agreement import all_agreements
from verifier.human.ingest import Ingested, ingest
from verifier.human.route import UNSURE, folder_name

REVIEW_DIR = "_review"


@dataclass
class Card:
    path: str  # inside the review folder: "framing/cowboy_shot/020000.png"
    aspect: str
    folder: str  # the folder it sits in now (a value's folder, _unsure, or a folder that is no value)
    value: str | None  # the value that folder names (None: _unsure or not a value)
    image: str | None  # the dataset image it stands for (None: not in the last report)
    caption: str | None
    says: str | None  # the caption's value for the aspect
    model: str  # what the model called it, in words


class ReviewTree:
    def __init__(self, root: Path, policy: Policy, review: Path | None = None):
        self.root = Path(root).resolve()
        self.policy = policy
        self.review = Path(review or self.root / REVIEW_DIR).resolve()
        if not self.review.is_dir() or not self.aspects():
            raise VerifierError(self.review, "nothing routed for a person here: run `capcheck route DATASET "
                                             "--aspects ASPECT` first")
        self._shas: dict[tuple[int, int, int, int], str] = {}  # (dev, inode, size, mtime) -> sha: a move costs no hash

    def aspects(self) -> list[str]:
        """The policy's aspects that have a folder in the review tree."""
        return [name for name, _ in self.policy.aspects.items() if (self.review / name).is_dir()]

    def values(self, aspect: str) -> list[str]:
        return list(self.policy.aspect(aspect).values)

    def cards(self) -> dict[str, list[Card]]:
        """aspect -> the images in its folders, as they are on disk now."""
        lines = self._report()
        out: dict[str, list[Card]] = {}
        for aspect in self.aspects():
            names = {squash(v): v for v in self.values(aspect)}
            cards = []
            for folder in sorted(p for p in (self.review / aspect).iterdir() if p.is_dir()):
                for file in sorted(folder.iterdir()):
                    if file.suffix.lower() in IMAGE_EXTS and file.is_file() and not file.name.startswith("."):
                        line = lines.get(self._sha(file))
                        cards.append(self._card(aspect, file, names.get(squash(folder.name)), line))
            out[aspect] = cards
        return out

    def _card(self, aspect: str, file: Path, value: str | None, line: dict | None) -> Card:
        image = line["image"] if line else None
        caption = read_caption((self.root / image).with_suffix(".txt")) if image else None
        says = facts_from_caption(parse(caption), self.policy).get(aspect) if caption else None
        return Card(file.relative_to(self.review).as_posix(), aspect, file.parent.name, value, image, caption, says,
                    model_call(line, aspect))

    def _sha(self, file: Path) -> str:
        st = file.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._shas:
            self._shas[key] = sha256_file(file)
        return self._shas[key]

    def _report(self) -> dict[str, dict]:
        """image sha -> its line in the latest report (the model's call)."""
        try:
            return {line["image_sha"]: line for line in read_report(reports_dir(self.root) / "latest.jsonl")}
        except ReportError:
            return {}  # sorted by hand without a verify: the page still moves files

    def inside(self, path: str) -> Path:
        """`path` (as the page sends it) as an image file in an aspect's folder,
        or VerifierError: nothing outside the review folder is ever touched."""
        target = (self.review / path).resolve()
        if not target.is_relative_to(self.review):
            raise VerifierError(path, "not inside the review folder")
        parts = target.relative_to(self.review).parts
        if len(parts) != 3 or parts[0] not in self.aspects() or target.suffix.lower() not in IMAGE_EXTS:
            raise VerifierError(path, "not an image in the review folder (ASPECT/VALUE/IMAGE)")
        if not target.is_file():
            raise VerifierError(path, "no such image (moved or renamed since the page was loaded: reload)")
        return target

    def move(self, path: str, to: str) -> str:
        """Move the image at `path` into the folder of value `to` (or `_unsure`),
        with the files beside it of the same name; returns its new path."""
        source = self.inside(path)
        aspect = source.parent.parent.name
        dest_dir = self._folder_for(aspect, to)
        if dest_dir == source.parent:
            return path
        companions = sorted(p for p in source.parent.iterdir() if p.stem == source.stem and p != source)
        stem = _free_stem(dest_dir, source, companions)
        dest_dir.mkdir(exist_ok=True)
        moved = dest_dir / f"{stem}{source.suffix}"
        os.rename(source, moved)  # same file system (one review folder): atomic, as Finder's move
        for other in companions:
            os.rename(other, dest_dir / f"{stem}{other.suffix}")
        return moved.relative_to(self.review).as_posix()

    def _folder_for(self, aspect: str, to: str) -> Path:
        """The value's folder (`cowboy_shot`); where only a folder a person made
        with another spelling exists (`Cowboy Shot`), that one, as it is."""
        if to == UNSURE:
            return self.review / aspect / UNSURE
        wanted = {squash(v): v for v in self.values(aspect)}.get(squash(to))
        if wanted is None:
            raise VerifierError(to, f"not a value of {aspect} (one of: {', '.join(self.values(aspect))}, {UNSURE})")
        canonical = self.review / aspect / folder_name(wanted)
        if canonical.is_dir():
            return canonical
        spelled = [p for p in sorted((self.review / aspect).iterdir())
                   if p.is_dir() and squash(p.name) == squash(wanted)]
        return spelled[0] if spelled else canonical

    def ingest_all(self) -> list[tuple[str, Ingested]]:
        """What `capcheck ingest _review --aspects A,B` does for the aspects with
        images (each read from its own folder), then the latest report shows
        the person's answers."""
        names = [aspect for aspect, cards in self.cards().items() if cards]
        if not names:
            return []
        done = []
        # The page's ingest is a writer like the CLI's: under the dataset lock (what a crash
        # left is settled first, silently: the page shows the folders as they are).
        with writing(self.root, "review", lambda note: None) as store:
            store.start_run("ingest", json.dumps({"path": str(self.review), "aspects": names, "from": "review page"}))
            for aspect in names:
                done.append((aspect, ingest(self.review / aspect, self.root, self.policy, aspect, store)))
            refresh_latest_page(self.root, self.policy, all_agreements(store, self.policy))
        return done


def model_call(line: dict | None, aspect: str) -> str:
    if line is None:
        return "not in the last report"
    if line.get("status") in (REFUSED, ERROR):
        return f"{line['status']}: {line.get('reason') or 'no reason given'}"
    seen = (line.get("observation") or {}).get(aspect)
    if not seen:
        return f"{aspect} not checked"
    call = seen.get("value") or "cannot determine"
    return call + (" (borderline)" if seen.get("borderline") else "")


def _free_stem(folder: Path, source: Path, companions: list[Path]) -> str:
    """The image's name in `folder`, or `name__2` … when another file holds it
    (as route names them); refuses when this very image is already there."""
    stem, n = source.stem, 1
    while any((folder / f"{stem}{p.suffix}").exists() for p in (source, *companions)):
        held = folder / f"{stem}{source.suffix}"
        if held.exists() and (os.path.samefile(held, source) or held.read_bytes() == source.read_bytes()):
            raise VerifierError(held, "this image is already in that folder (two copies would be two answers)")
        n += 1
        stem = f"{source.stem}__{n}"
    return stem
