"""The loss folder on the review page: the worst fits, why each is there, and a person's word on its caption.

`capcheck route --losses` hard-links the images the trained LoRA fit worst
into `_review/loss/` (route_losses.py). Unlike an aspect's folders there is
no value to sort them into: the question is whether the caption tells the
truth. So a card shows the caption as it is now and the numbers that put it
there (the ratio, both losses, the fence and the count it rests on, from
`.capcheck/losses.json`), and a person either

- fixes the caption text on the page: written as apply writes, under the
  dataset lock, as a journaled intent and an atomic rename
  (`captions.journal`), so `capcheck undo` takes it back; or
- says the caption is right.

Either is a resolution of that very caption text in the store (`how` =
`review-edit` / `review-right`): the training gate counts it as settled by a
person, and a reload shows the card done. A caption changed since (by hand,
by `undo`) has no resolution and waits again. The files stay where route
put them: the folder says what is in the queue, the store what was decided.
A file the current losses.json does not list (a folder left from an earlier
run) is still a card, saying so in one line.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from captions.dataset import IMAGE_EXTS, caption_path
from captions.errors import CaptionsError, CaptionWriteError
from captions.journal import read_caption, write_caption
from verifier.core.images import sha256_file, text_sha
from verifier.core.store import Store
from verifier.core.writer import writing
from verifier.errors import VerifierError
from verifier.human import route_losses

LOSS = route_losses.LOSS_DIR
EDITED, RIGHT = "review-edit", "review-right"  # the resolutions a person makes here
DECIDED = {EDITED: "caption fixed on the review page", RIGHT: "a person said the caption is right"}


@dataclass
class LossWhy:
    """Why a file in the loss folder is there, in words that carry their numbers."""

    entry: dict | None  # its line in losses.json (None: not listed there)
    lines: list[str]  # the reason, each line with what it rests on
    stale: str | None = None  # one line when losses.json no longer backs the card
    caption_sha: str | None = None  # of the caption as read for the card (the page sends it back)
    decided: str | None = None  # EDITED / RIGHT when a person settled this very caption text
    problem: str | None = None  # the caption cannot be read or written from here


def read_losses(root: Path) -> tuple[dict | None, str | None]:
    """losses.json, or why not (one line): the page shows cards either way."""
    try:
        data = route_losses.read(root)
    except CaptionsError as exc:
        return None, str(exc)
    for n, entry in enumerate(data["images"], 1):  # a hand-edited file: say which entry, never a KeyError
        if not (isinstance(entry, dict) and isinstance(entry.get("image"), str)
                and all(isinstance(entry.get(k), int | float) for k in ("ratio", "loss_lora", "loss_base"))):
            return None, (f"{route_losses.losses_path(root)}: entry {n} of 'images' is not an image with its "
                          "ratio, loss_lora and loss_base")
    quartiles = data.get("quartiles")
    if quartiles is not None and not (isinstance(quartiles, dict) and all(
            isinstance(quartiles.get(k), int | float) for k in ("q1", "q3", "fence"))):
        return None, f"{route_losses.losses_path(root)}: 'quartiles' is not q1, q3 and fence"
    return data, None


def entry_for(root: Path, file: Path, sha: str, entries: list[dict]) -> dict | None:
    """The losses.json line a file in the loss folder stands for: the dataset image it is a link
    of, else the one with its bytes (a copy), else the one of its name (`name__2` is `name`)."""
    for entry in entries:
        try:
            if os.path.samefile(root / entry["image"], file):
                return entry
        except OSError:
            continue
    by_sha = [e for e in entries if e.get("sha256") == sha]
    if by_sha:
        return by_sha[0]
    stem = file.stem.split("__")[0]
    named = [e for e in entries if Path(e["image"]).stem == stem and Path(e["image"]).suffix == file.suffix]
    return named[0] if len(named) == 1 else None


def why(data: dict | None, problem: str | None, entry: dict | None) -> tuple[list[str], str | None]:
    """The card's reason lines, and a stale line when losses.json does not back them."""
    if data is None:
        return [], f"no losses to show: {problem}"
    if entry is None:
        return [], ("not in the current losses.json: a folder left from an earlier run (run `capcheck route "
                    "DATASET --losses` again, or delete the file)")
    n = data.get("images_scored") or len(data["images"])
    rank = next((i for i, e in enumerate(sorted(data["images"], key=lambda e: -e["ratio"]), 1) if e is entry), None)
    quartiles = data.get("quartiles")
    ratio = entry["ratio"]
    if quartiles:
        side = ">" if ratio > quartiles["fence"] else "≤"
        head = (f"ratio {ratio:.3f} {side} fence {quartiles['fence']:.3f} (Q3 + 1.5 IQR of {n} images: "
                f"Q1 {quartiles['q1']:.3f}, Q3 {quartiles['q3']:.3f})")
    else:
        head = f"ratio {ratio:.3f} (no fence: {n} images, under 4, are only ranked)"
    lines = [head, f"loss {entry['loss_lora']:.4f} with the LoRA, {entry['loss_base']:.4f} without "
                   f"(ratio = with / without; rank {rank} of {n}, worst first)"]
    if data.get("lora"):
        lines.append(f"LoRA: {data['lora']}")
    stale = None if entry.get("worst") else ("no longer a worst fit by the current losses.json (run `capcheck "
                                             "route DATASET --losses` again to refresh the folder)")
    return lines, stale


def decision(store: Store, image_sha: str, caption_sha: str) -> str | None:
    """What a person decided on this very caption text here (None: nothing yet)."""
    row = store.db.execute("SELECT how FROM resolutions WHERE image_sha=? AND caption_sha=? AND how IN (?, ?) "
                           "ORDER BY id DESC LIMIT 1", (image_sha, caption_sha, EDITED, RIGHT)).fetchone()
    return row["how"] if row is not None else None


def describe(root: Path, store: Store, file: Path, sha: str, data: dict | None, problem: str | None
             ) -> tuple[str | None, str | None, LossWhy]:
    """(dataset image, its caption now, why) for one file in the loss folder."""
    entry = entry_for(root, file, sha, data["images"]) if data else None
    lines, stale = why(data, problem, entry)
    found = LossWhy(entry, lines, stale)
    if entry is None:
        return None, None, found
    image = entry["image"]
    if not (root / image).resolve().is_relative_to(Path(root).resolve()):  # never a caption outside the dataset
        found.stale = f"{image}: not a path inside the dataset (losses.json edited by hand?)"
        return None, None, found
    if not (root / image).is_file():
        found.stale = f"{image} is no longer in the dataset: nothing to fix here"
        return image, None, found
    try:
        caption = read_caption(caption_path(root / image))
    except CaptionWriteError as exc:
        found.problem = str(exc)
        return image, None, found
    if caption is None:
        found.problem = f"{caption_path(root / image).name}: no caption next to the image"
        return image, None, found
    found.caption_sha = text_sha(caption)
    found.decided = decision(store, store.file_sha(root / image, sha256_file), found.caption_sha)
    return image, caption, found


def undecided(root: Path, store: Store) -> list[str]:
    """The worst fits waiting in `_review/loss/` (route's default place) for a person's word on the
    caption they have now: what `capcheck train` mentions, without waiting for them."""
    folder = Path(root) / "_review" / LOSS
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS and f.is_file()) \
        if folder.is_dir() else []
    data, problem = read_losses(root) if files else (None, None)
    waiting = []
    for file in files:
        image, caption, loss = describe(Path(root), store, file, sha256_file(file), data, problem)
        if image is not None and caption is not None and loss.decided is None and loss.entry.get("worst"):
            waiting.append(image)
    return waiting


def _same_lines(text: str, like: str) -> str:
    """A browser's textarea sends \\n line ends; a caption written with \\r\\n keeps them."""
    text = text.replace("\r\n", "\n")
    return text.replace("\n", "\r\n") if "\r\n" in like else text


def decide(root: Path, image: str, caption_sha: str, text: str | None) -> bool:
    """A person's word on `image`'s caption, which the page read as `caption_sha`: the new
    `text` (None: the caption is right). Returns False when the text was already that."""
    caption = caption_path(root / image)
    with writing(root, "review", lambda note: None) as store:  # a writer like apply: the lock, a crash settled
        before = read_caption(caption)
        if before is None:
            raise CaptionWriteError(caption, "no caption next to the image")
        if text_sha(before) != caption_sha:
            raise CaptionWriteError(caption, "caption changed on disk since the page was loaded; reload, nothing "
                                             "was written")
        image_sha = store.file_sha(root / image, sha256_file)
        args = json.dumps({"image": image, "from": "review page", "loss": True})
        if text is None:
            store.start_run("review", args)
            store.add_resolution(image, image_sha, caption_sha, RIGHT)
            return True
        new = _same_lines(text, before)
        if not new.strip():  # an emptied box is more likely a slip than a wish to train on nothing
            raise VerifierError(caption, "an empty caption is not saved (delete the caption file by hand if that "
                                         "is meant)")
        if new == before:
            return False
        store.start_run("review", args)
        write_caption(caption, new, store, "review", expect=before)
        store.add_resolution(image, image_sha, text_sha(new), EDITED)
        return True
