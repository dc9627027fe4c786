"""The character's trigger, guessed from the captions when no policy names it.

A trigger is a token in nearly every caption (90%) that is not a Danbooru
tag (not in the user's tag CSV, nor in the one capcheck ships), the
earliest-written one when several qualify (`kanachan, 1girl, solo, …`).
`capcheck init` writes the guess into a starter policy; the tags audit
and `apply` use it on a dataset with no policy of its own, so a trigger
is never asked about, and never removed, even when nobody ran `init`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from captions.caption import parse
from captions.dataset import iter_images
from captions.errors import CaptionsError
from captions.journal import read_caption
from captions.policy import RATINGS
from captions.tags import is_score_tag
from captions.visual import is_count, is_quality
from captions.vocab import Vocabulary, with_builtin

NEARLY_EVERY = 0.9  # share of captions a trigger appears in


def is_known(tag: str, vocab: Vocabulary | None = None) -> bool:
    """A Danbooru tag (any type: a character's name is no trigger of this dataset's making)."""
    known = with_builtin(vocab)
    return tag in known or known.canonical(tag) is not None or is_quality(tag) or is_count(tag)


def guess_trigger(tag_lists: Sequence[Sequence[str]], vocab: Vocabulary | None = None,
                  counts: Counter | None = None) -> str | None:
    """The trigger of a dataset from each caption's tags (in caption order), or None."""
    if not tag_lists:
        return None
    counts = Counter() if counts is None else counts
    positions: dict[str, list[int]] = {}
    for tags in tag_lists:
        for position, tag in enumerate(dict.fromkeys(tags)):
            counts[tag] += 1
            positions.setdefault(tag, []).append(position)
    candidates = [t for t, n in counts.items() if n / len(tag_lists) >= NEARLY_EVERY and t not in RATINGS
                  and not is_score_tag(t) and not is_known(t, vocab)]
    if not candidates:
        return None
    # A trigger is written first, as a rule: the earliest on average wins.
    return min(candidates, key=lambda t: (sum(positions[t]) / len(positions[t]), -counts[t], t))


def dataset_trigger(root: Path, vocab: Vocabulary | None = None, caption_ext: str | None = None) -> str | None:
    """The guessed trigger of the captions under `root` (unreadable ones are left out)."""
    lists = []
    for item in iter_images(root, caption_ext=caption_ext):
        try:
            text = read_caption(item.caption)
        except CaptionsError:
            continue
        if text and text.strip():
            lists.append(parse(text).tags)
    return guess_trigger(lists, vocab)
