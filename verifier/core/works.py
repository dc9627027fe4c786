"""What a verify run asks about: the captioned images of a dataset, hashed, with their claims.

`collect` walks the dataset once: each image with a readable caption
becomes a `Work` (its path, sha256 from the store's cache while size and
mtime hold, the caption and what it claims); a missing or unreadable
caption is a reason it is skipped, and a file that cannot be read (a
broken link, no permission) is named apart. `tag_questions` adds the tags
audit's question to each work.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from captions.caption import parse
from captions.dataset import IMAGE_EXTS, iter_images, link_problem
from captions.errors import CaptionsError
from captions.facts import Facts, facts_from_caption
from captions.journal import read_caption
from captions.policy import Policy
from captions.vocab import find_vocabulary
from verifier.core.images import sha256_file, text_sha
from verifier.core.options import VerifyOptions
from verifier.core.store import Store
from verifier.core.tags import questions
from verifier.core.verdict import TagClaims

UNREADABLE = "unreadable caption"  # skipped: not valid UTF-8, or empty


@dataclass
class Work:
    path: Path
    image: str  # relative to the dataset
    image_sha: str
    caption: str
    caption_sha: str
    claims: Facts
    tags: TagClaims | None = None  # the tags audit's question (set when the run checks tags)


def selected(rel: str, only: list[str]) -> bool:
    """Whether `--only` patterns (none: all) pick the image at `rel` (by path or file name)."""
    return not only or any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(rel.rsplit("/", 1)[-1], g) for g in only)


def collect(root: Path, policy: Policy, store: Store, only: list[str], caption_ext: str | None = None,
            unreadable: dict[str, str] | None = None,
            on_hashed: Callable[[int], None] | None = None) -> tuple[list[Work], dict[str, str]]:
    """Every image with a caption, hashed; the others with the reason they are skipped.
    A file that cannot be read (a broken link, no permission) goes to `unreadable`.
    `on_hashed(n)`: after each file hashed afresh (not from the store's cache), n so far."""
    works, skipped = [], {}
    hashed = store.hashed
    unreadable = {} if unreadable is None else unreadable
    for item in iter_images(root, caption_ext=caption_ext):
        if (problem := link_problem(item.image, root)) is not None:  # before resolving: a loop cannot be
            name = Path(os.path.relpath(item.image, root)).as_posix()
            if selected(name, only):
                unreadable[name] = problem
            continue
        rel = store.rel(item.image)
        if not selected(rel, only):
            continue
        text, why = read_work_caption(item.caption)
        if text is None:  # that image alone: the run goes on
            skipped[rel] = why
            continue
        try:
            sha = store.file_sha(item.image, sha256_file, rel)
        except OSError as exc:  # one file the run cannot read: named, the others go on
            unreadable[rel] = f"cannot read image: {exc.strerror or exc}"
            continue
        if on_hashed is not None and store.hashed > hashed:
            on_hashed(store.hashed - hashed)
        claims = facts_from_caption(parse(text), policy)
        works.append(Work(item.image, rel, sha, text, text_sha(text), claims))
    return works, skipped


def other_note(others: list[str]) -> str:
    """One line naming the pictures that are not images of the dataset."""
    kinds = ", ".join(sorted({Path(o).suffix.lower() for o in others}))
    read = " ".join(sorted(IMAGE_EXTS))
    return (f"{len(others)} not checked: {kinds} files are not images of this dataset (capcheck and kohya-style "
            f"trainers read {read}; convert them to include them): {', '.join(others)}")


def tag_questions(root: Path, works: list[Work], policy: Policy, options: VerifyOptions) -> None:
    """Each work's tags-audit question: its checkable tags and its probes (from
    the whole dataset's tags, also when --only checks a few images)."""
    vocab = find_vocabulary(None, policy)
    dataset = None
    if options.only:
        texts = (read_work_caption(item.caption)[0] for item in iter_images(root, caption_ext=options.caption_ext))
        dataset = [parse(t) for t in texts if t]
    asked = questions({w.image: parse(w.caption) for w in works}, policy, vocab, options.aspects, options.probes,
                      dataset)
    for w in works:
        q = asked[w.image]
        w.tags = TagClaims(tuple(q.tags), tuple(q.probes), options.mismatch_share, tuple(q.not_asked.items()))


def read_work_caption(path: Path) -> tuple[str | None, str]:
    """A caption's text, or None and why it cannot be verified (one rule for the
    run and for the dataset-wide probe pool)."""
    try:
        text = read_caption(path)
    except CaptionsError as exc:
        return None, f"{UNREADABLE}: {exc.message}"
    if text is None:
        return None, "no caption"
    if not text.strip():
        return None, f"{UNREADABLE}: the caption is empty"
    return text, ""
