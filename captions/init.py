"""`capcheck init`: a starter policy written from a dataset's own captions.

For a person to edit, so every guess is a commented line they can check:

- the trigger (`captions.trigger`): a token in nearly every caption that
  is not a Danbooru tag (not in the tag CSV, nor in the one capcheck
  ships), the earliest-written one when several qualify;
- tags in nearly every caption, as `kept` (written in every caption) with
  a comment to move them to `absorbed` if the trigger should learn them;
- the aspects: the generic policy's Danbooru vocabulary and definitions;
- a frequency table of the dataset's tags, as comments;
- the tag CSV's path when one is found.

Pure guessing over plain data (`guess`), then one file written (`write_starter`).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from captions.caption import parse
from captions.dataset import iter_images
from captions.errors import CaptionsError, PolicyError
from captions.generic import DATASET_POLICY, generic_policy, generic_text
from captions.journal import atomic_write, read_caption
from captions.policy import RATINGS, load_policy
from captions.sidecar import read_sidecar
from captions.tags import is_score_tag, prompt_tags
from captions.trigger import guess_trigger
from captions.vocab import Vocabulary

COMMON = 0.8  # share of captions that makes a tag a kept/absorbed candidate
QUALITY_WORDS = frozenset({"masterpiece", "best quality", "high quality", "good quality", "amazing quality",
                           "very aesthetic", "absurdres", "highres", "newest"})


@dataclass
class Guess:
    captions: int = 0
    counts: Counter = field(default_factory=Counter)  # tag -> captions it appears in
    trigger: str | None = None
    common: list[str] = field(default_factory=list)  # in nearly every caption (not the trigger)
    quality: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def guess(tag_lists: list[list[str]], vocab: Vocabulary | None = None) -> Guess:
    """The starter policy's guesses from each caption's tags (in caption order)."""
    out = Guess(captions=len(tag_lists))
    out.trigger = guess_trigger(tag_lists, vocab, out.counts)
    if not tag_lists:
        return out
    share = {t: n / len(tag_lists) for t, n in out.counts.items()}
    out.quality = [t for t, s in share.items() if s >= 0.5 and (t in QUALITY_WORDS or is_score_tag(t))]
    out.common = [t for t, _ in out.counts.most_common() if share[t] >= COMMON and t != out.trigger
                  and t not in out.quality and t not in RATINGS and t not in generic_policy().unchecked]
    return out


def read_dataset(root: Path, from_sidecars: bool = False, caption_ext: str | None = None
                 ) -> tuple[list[list[str]], list[str]]:
    """Each image's tags (its caption's, or its sidecar prompt's), and the files that could not be read."""
    lists, unreadable = [], []
    for item in iter_images(root, caption_ext=caption_ext):
        try:
            if from_sidecars:
                if item.sidecar.exists():
                    lists.append(prompt_tags(read_sidecar(item.sidecar)))
                continue
            text = read_caption(item.caption)
        except CaptionsError as exc:
            unreadable.append(str(exc))
            continue
        if text is not None and text.strip():
            lists.append(parse(text).tags)
    return lists, unreadable


def _flow(values: list[str]) -> str:
    return yaml.safe_dump(values, default_flow_style=True, allow_unicode=True, width=10**6).strip()


def render_starter(g: Guess, tags_csv: Path | None, source: str) -> str:
    """The starter policy as commented YAML (the generic policy's aspects below the guesses)."""
    lines = [
        f"# Starter policy written by `capcheck init` from {source}.",
        "# Every line above `aspects:` is a guess from the captions: check it, then",
        "# run `capcheck verify DATASET --aspects framing,tags` (this file is used",
        f"# automatically when it is the dataset's {DATASET_POLICY.as_posix()}).",
        "",
    ]
    if g.trigger:
        share = g.counts[g.trigger] / g.captions
        lines += [f"# In {share:.0%} of the captions and not a Danbooru tag: the character's trigger.",
                  f"trigger: {_flow([g.trigger])[1:-1]}"]
    else:
        lines += ["# No trigger found (no token in nearly every caption that is not a Danbooru tag).",
                  "# trigger: yourname"]
    lines += ["", f"quality: {_flow(g.quality)}", "subject: []", "background: []", "",
              "# In nearly every caption. Keep them (written in every caption), or move a tag",
              "# to `absorbed` when the trigger should learn it (it is then dropped, and never",
              "# asked about in the tags audit).",
              f"kept: {_flow(g.common)}", "absorbed: []", ""]
    generic = generic_policy()
    lines += ["# Never asked about in the tags audit.", f"unchecked: {_flow(generic.unchecked)}", ""]
    if tags_csv is not None:
        lines += ["# The Danbooru tag CSV: lint's unknown-tag rule and which tags the audit checks.",
                  f"tags_csv: {_flow([str(tags_csv)])[1:-1]}", ""]
    else:
        lines += [f"# tags_csv: path/to/danbooru.csv   (none found: pass --tags or set ${'CAPCHECK_TAGS_CSV'})", ""]
    body = generic_text()
    lines.append(body[body.index("aspects:"):].rstrip())
    lines += ["", f"# Tag frequency over {g.captions} captions (captions that have the tag):"]
    lines += [f"#   {n:5d}  {tag}" for tag, n in g.counts.most_common(60)]
    if len(g.counts) > 60:
        lines.append(f"#   … and {len(g.counts) - 60} more tags")
    return "\n".join(lines) + "\n"


def find_tags_csv(explicit: Path | None) -> Path | None:
    path = explicit or os.environ.get("CAPCHECK_TAGS_CSV")
    return Path(path).resolve() if path and Path(path).is_file() else None


def write_starter(root: Path, out: Path | None = None, *, from_sidecars: bool = False, tags: Path | None = None,
                  force: bool = False, caption_ext: str | None = None) -> tuple[Path, Guess]:
    """Write the starter policy (default DATASET/.capcheck/policy.yaml); never over an existing file unless `force`."""
    root = Path(root)
    target = out or root / DATASET_POLICY
    if target.exists() and not force:
        raise PolicyError(target, "already exists; edit it, or pass --force to write a new one over it")
    csv = find_tags_csv(tags)
    vocab = Vocabulary.load(csv) if csv else None
    lists, unreadable = read_dataset(root, from_sidecars, caption_ext)
    if not lists:
        what = "sidecars with a prompt" if from_sidecars else "captions"
        raise CaptionsError(root, f"no {what} to learn a policy from")
    g = guess(lists, vocab)
    g.unreadable = unreadable
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, render_starter(g, csv, "sidecar prompts" if from_sidecars else "the captions"))
    load_policy(target)  # what we wrote must load: a starter that does not is a bug, said at once
    return target, g
