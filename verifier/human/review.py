"""The review folders as data: what waits for a person, and moving it.

`route` put the images that need eyes into `DATASET/_review/<aspect>/<value>/`.
This module reads that tree the way a person sees it in Finder (folders are
the truth: nothing is cached between calls, so a move made elsewhere shows
at once), says for each image what its caption claims and what the model
called it, and moves an image into another value's folder exactly as a
person would: the file is renamed on disk, with whatever sits beside it
under the same name (`.txt`, `.json`). Answers still come in one way only:
`ingest`, run on the same folders (`ingest_all`).

The tags audit's tree (`tags/mismatch/`, `tags/<tag>/kept|removed/`) is
served too: a tag card moves between its tag's `kept/` and `removed/`; a
mismatch card only says which caption to edit by hand. A card a person has
already answered (ingested, the answer the folder it sits in) is settled,
not waiting. Two dataset images with the same bytes are two cards, each
with its own name and caption (the route that placed the file says which).
The worst fits `route --losses` put in `loss/` are cards too, with their
numbers; a person fixes the caption there or says it is right
(`review_loss.py`), and nothing moves.

The page in the browser (`review_page.py`) is a faster pair of hands over
this; every path it sends is checked here, inside the review folder.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from captions.aspects import squash
from captions.caption import parse
from captions.dataset import IMAGE_EXTS, caption_path
from captions.facts import facts_from_caption
from captions.journal import read_caption
from captions.policy import Policy
from verifier.core.images import sha256_file
from verifier.core.report import read_report, refresh_latest_page, reports_dir
from verifier.core.store import Store
from verifier.core.tags import ABSENT, PRESENT, TAGS
from verifier.core.verdict import ERROR, REFUSED
from verifier.core.writer import writing
from verifier.errors import ReportError, VerifierError
from verifier.human.agreement import all_agreements
from verifier.human.folders import UNSURE, Ingested, folder_name
from verifier.human.ingest import ingest
from verifier.human.review_loss import LOSS, LossWhy, decide, describe, read_losses
from verifier.human.tag_review import KEPT, MISMATCH_DIR, REMOVED, folder_tag, person_key

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
    tag: str | None = None  # a tag card: the tag in question (None: an aspect card, or tags/mismatch/)
    settled: bool = False  # a person's ingested answer is the folder it sits in: nothing waits
    loss: LossWhy | None = None  # a worst fit's card (loss/): why it is there, what a person decided

    @property
    def mismatch(self) -> bool:
        return self.aspect == TAGS and self.folder == MISMATCH_DIR and self.tag is None


class ReviewTree:
    def __init__(self, root: Path, policy: Policy, review: Path | None = None):
        self.root = Path(root).resolve()
        self.policy = policy
        self.review = Path(review or self.root / REVIEW_DIR).resolve()
        if not self.review.is_dir() or not self.aspects():
            raise VerifierError(self.review, "nothing routed for a person here: run `capcheck route DATASET "
                                             "--aspects ASPECT` (or `--losses`) first")
        self._shas: dict[tuple[int, int, int, int], str] = {}  # (dev, inode, size, mtime) -> sha: a move costs no hash

    def aspects(self) -> list[str]:
        """The policy's aspects that have a folder in the review tree (and `tags`, the audit's; `loss`)."""
        names = [name for name, _ in self.policy.aspects.items() if (self.review / name).is_dir()]
        return names + [extra for extra in (TAGS, LOSS) if (self.review / extra).is_dir()]

    def values(self, aspect: str) -> list[str]:
        return [KEPT, REMOVED] if aspect == TAGS else list(self.policy.aspect(aspect).values)

    def cards(self) -> dict[str, list[Card]]:
        """aspect -> the images in its folders, as they are on disk now."""
        lines = self._report()
        with Store(self.root) as store:  # the person's answers and the routes (one per call: pages load in threads)
            return {aspect: self._tag_cards(lines, store) if aspect == TAGS else self._loss_cards(store)
                    if aspect == LOSS else self._aspect_cards(aspect, lines, store) for aspect in self.aspects()}

    def _aspect_cards(self, aspect: str, lines: dict[str, list[dict]], store: Store) -> list[Card]:
        names = {squash(v): v for v in self.values(aspect)}
        return [self._card(store, aspect, file, names.get(squash(file.parent.name)), lines)
                for folder in _folders(self.review / aspect) for file in _images(folder)]

    def _tag_cards(self, lines: dict[str, list[dict]], store: Store) -> list[Card]:
        """tags/mismatch/IMAGE, and tags/<tag>/kept|removed/IMAGE."""
        cards = [self._card(store, TAGS, file, None, lines) for file in _images(self.review / TAGS / MISMATCH_DIR)]
        for tag_dir in _folders(self.review / TAGS):
            if tag_dir.name != MISMATCH_DIR:
                cards += [self._card(store, TAGS, file, side.name if side.name in (KEPT, REMOVED) else None, lines,
                                     folder_tag(tag_dir.name)) for side in _folders(tag_dir) for file in _images(side)]
        return cards

    def _loss_cards(self, store: Store) -> list[Card]:
        """loss/IMAGE: the worst first (by losses.json's ratio), the ones it does not back last."""
        data, problem = read_losses(self.root)
        cards = [self._loss_card(store, file, data, problem) for file in _images(self.review / LOSS)]
        return sorted(cards, key=lambda c: -c.loss.entry["ratio"] if c.loss.entry else float("inf"))

    def _loss_card(self, store: Store, file: Path, data: dict | None, problem: str | None) -> Card:
        image, caption, loss = describe(self.root, store, file, self._sha(file), data, problem)
        return Card(file.relative_to(self.review).as_posix(), LOSS, LOSS, None, image, caption, None,
                    "", settled=loss.decided is not None, loss=loss)

    def decide(self, path: str, caption_sha: str, text: str | None) -> tuple[Card, bool]:
        """A person's word on a worst fit's caption (`review_loss.decide`): the card as it is now,
        and whether anything was recorded (False: the text was already that)."""
        file = self.inside(path)
        if file.parent != self.review / LOSS:
            raise VerifierError(path, "only a worst fit's caption (loss/IMAGE) is fixed on the page")
        with Store(self.root) as store:
            card = self._loss_card(store, file, *read_losses(self.root))
        if card.image is None or card.caption is None:
            raise VerifierError(path, card.loss.problem or card.loss.stale or "no caption to decide on")
        changed = decide(self.root, card.image, caption_sha, text)
        with Store(self.root) as store:
            return self._loss_card(store, file, *read_losses(self.root)), changed

    def _card(self, store: Store, aspect: str, file: Path, value: str | None, lines: dict[str, list[dict]],
              tag: str | None = None) -> Card:
        sha = self._sha(file)
        line = _which(store, file, sha, lines.get(sha, []))
        image = line["image"] if line else None
        caption = read_caption(caption_path(self.root / image)) if image else None
        people = store.human_answers(sha)
        if aspect != TAGS:
            says = facts_from_caption(parse(caption), self.policy).get(aspect) if caption else None
            settled = value is not None and people.get(aspect) == value
            model = model_call(line, aspect)
        else:
            said = {KEPT: PRESENT, REMOVED: ABSENT}.get(value or "")
            settled = tag is not None and said is not None and people.get(person_key(tag)) == said
            says = tag_says(caption, tag)
            model = tag_call(line, tag)
        return Card(file.relative_to(self.review).as_posix(), aspect, file.parent.name, value, image, caption, says,
                    model, tag, settled)

    def _sha(self, file: Path) -> str:
        st = file.stat()
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if key not in self._shas:
            self._shas[key] = sha256_file(file)
        return self._shas[key]

    def _report(self) -> dict[str, list[dict]]:
        """image sha -> its lines in the latest report (the model's call; several for duplicates)."""
        out: dict[str, list[dict]] = defaultdict(list)
        try:
            for line in read_report(reports_dir(self.root) / "latest.jsonl"):
                out[line["image_sha"]].append(line)
        except ReportError:
            pass  # sorted by hand without a verify: the page still moves files
        return out

    def inside(self, path: str) -> Path:
        """`path` (as the page sends it) as an image file in an aspect's folder,
        or VerifierError: nothing outside the review folder is ever touched."""
        target = (self.review / path).resolve()
        if not target.is_relative_to(self.review):
            raise VerifierError(path, "not inside the review folder")
        parts = target.relative_to(self.review).parts
        deep = 4 if parts[:1] == (TAGS,) and parts[1:2] != (MISMATCH_DIR,) else 2 if parts[:1] == (LOSS,) else 3
        if len(parts) != deep or parts[0] not in self.aspects() or target.suffix.lower() not in IMAGE_EXTS:
            shape = {(TAGS,): "tags/TAG/kept/IMAGE", (LOSS,): "loss/IMAGE"}.get(parts[:1], "ASPECT/VALUE/IMAGE")
            raise VerifierError(path, f"not an image in the review folder ({shape})")
        if not target.is_file():
            raise VerifierError(path, "no such image (moved or renamed since the page was loaded: reload)")
        return target

    def move(self, path: str, to: str) -> str:
        """Move the image at `path` into the folder of value `to` (or `_unsure`),
        with the files beside it of the same name; returns its new path."""
        source = self.inside(path)
        if source.parent == self.review / LOSS:
            raise VerifierError(path, "a worst fit is not sorted into a folder: fix its caption on its card, or say "
                                      "the caption is right")
        if source.parts[-3:-2] == (TAGS,) and source.parent.name == MISMATCH_DIR:
            raise VerifierError(path, "a caption that may belong to another image is fixed by hand, in the dataset: "
                                      "there is nowhere to move it")
        in_tags = source.parent.parent.parent == self.review / TAGS
        if in_tags and to not in (KEPT, REMOVED):
            raise VerifierError(to, f"a tag's image goes to {KEPT} (the tag is right) or {REMOVED}")
        dest_dir = source.parent.parent / to if in_tags else self._folder_for(source.parent.parent.name, to)
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
        names = [aspect for aspect, cards in self.cards().items() if cards and aspect != LOSS]  # loss: no folders
        if not names:
            return []
        done = []
        # The page's ingest is a writer like the CLI's: under the dataset lock (what a crash
        # left is settled first, silently: the page shows the folders as they are).
        with writing(self.root, "review", lambda note: None) as store:
            store.start_run("ingest", json.dumps({"path": str(self.review), "aspects": names, "from": "review page"}))
            for aspect in names:  # tags: ingest reads tags/<tag>/kept|removed/ (mismatch/ is fixed by hand)
                done.append((aspect, ingest(self.review / aspect, self.root, self.policy, aspect, store)))
            refresh_latest_page(self.root, self.policy, all_agreements(store, self.policy))
        return done


def _which(store: Store, file: Path, sha: str, lines: list[dict]) -> dict | None:
    """The report line a file in the review tree stands for: the image route placed
    there (duplicates share a sha, not a name), else the one of the same name."""
    if len(lines) < 2:
        return lines[0] if lines else None
    by_image = {line["image"]: line for line in lines}
    for row in store.routes_for(sha):
        if Path(row["dest"]) == file.resolve() and row["image"] in by_image:
            return by_image[row["image"]]
    stem = file.stem.split("__")[0]
    named = [line for line in lines if Path(line["image"]).stem == stem]
    return (named or lines)[0]


def _folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _images(folder: Path) -> list[Path]:
    return [f for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_EXTS and f.is_file()
            and not f.name.startswith(".")] if folder.is_dir() else []


def tag_says(caption: str | None, tag: str | None) -> str | None:
    if caption is None:
        return None
    if tag is None:
        return "a caption that may belong to another image: edit it by hand in the dataset"
    return tag if tag in parse(caption).tags else f"{tag} (no longer in the caption)"


def tag_call(line: dict | None, tag: str | None) -> str:
    """What the model said: the tag absent, or the caption another image's."""
    if line is None:
        return "not in the last report"
    entry = line.get("tags") or {}
    if tag is None:
        swap = entry.get("likely_swap")
        return f"likely swap with {swap}" if swap else "mismatch: most of its tags called absent"
    return "absent" if tag in entry.get("refuted", []) else "not refuted"


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
