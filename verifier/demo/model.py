"""The demo vision model: a labelled stand-in that answers from a truth table.

NOT a vision model. It recognises each image it was given the truth for
(by a 16x16 grey thumbnail, which survives resizing and JPEG) and answers
what the table says the image shows, in either protocol, so the whole loop
can be seen and tested without an API key. It is used only when asked for
by name (`capcheck demo-server`, the tests, the bench).

Truth file: `{"relative/path.png": {"framing": "cowboy shot", ...,
"borderline": ["framing"], "model": {"framing": "full body"}}}`; a `null`
aspect means the image does not show it (no face from behind) and is
answered `cannot determine`. `tags` lists the tags the image shows (the
tags audit: any other tag asked about is absent). `model` makes the stand-in see something else
than the truth for an aspect: a planted disagreement with the person who
sorts by the truth (the article's strict Danbooru call vs the human eye).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from captions.caption import parse
from captions.facts import facts_from_caption
from captions.pixels import as_rgb
from captions.policy import Policy
from verifier.core.observation import CANNOT
from verifier.core.prompting import HEADINGS
from verifier.core.tags import ABSENT, PRESENT

_LETTER = re.compile(r"^([A-Z])\. (.+?) — ", re.M)
_CAPTION = re.compile(r"Caption: ---\n(.*?)\n---", re.S)


def thumbnail(image: Image.Image) -> bytes:
    return as_rgb(image).convert("L").resize((16, 16), Image.Resampling.BOX).tobytes()


def average_hash(thumb: bytes) -> int:
    """64-bit hash of the 8x8 block means: the fast first look-up."""
    cells = [sum(thumb[(2 * y + dy) * 16 + 2 * x + dx] for dy in (0, 1) for dx in (0, 1)) for y in range(8)
             for x in range(8)]
    mean = sum(cells) / 64
    return sum(1 << i for i, c in enumerate(cells) if c > mean)


# Thumbnail distances (sum over 256 grey levels): JPEG and resizing move a
# picture by a few hundred; a different picture is thousands away.
CLOSE, FAR = 4 * 256, 24 * 256
# Up to this many known images every look-up is a full nearest search: two
# pictures that differ by a mouth are closer than JPEG noise, and only the
# full search tells them apart. Past it (thousands of bench images) hashing.
EXACT_UP_TO = 256


def _distance(a: bytes, b: bytes) -> int:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True))


def _nearest(candidates: list[Known], thumb: bytes) -> tuple[int, Known] | None:
    scored = [(_distance(k.thumb, thumb), i, k) for i, k in enumerate(candidates)]
    return min(scored)[::2] if scored else None


@dataclass(frozen=True)
class Known:
    key: str
    truth: dict
    thumb: bytes


def _find(root: Path, key: str) -> Path:
    """The image `key` names, or the one file of that name under `root` (a
    person may have sorted the dataset in place since the truth was written)."""
    path = root / key
    if path.exists():
        return path
    found = [p for p in root.rglob(Path(key).name) if "_review" not in p.parts]
    if len(found) != 1:
        raise FileNotFoundError(f"{path}: not found (and {len(found)} files of that name under {root})")
    return found[0]


class DemoModel:
    def __init__(self, truth: dict[str, dict], root: Path | None, policy: Policy | None = None,
                 thumbs: dict[str, bytes] | None = None):
        self.policy = policy
        self.known: list[Known] = []
        self.by_hash: dict[int, list[Known]] = {}
        self.unreadable: dict[str, str] = {}  # truth entries whose image is gone or broken: never recognised
        for key, facts in truth.items():
            if thumbs is not None and key in thumbs:
                thumb = thumbs[key]
            else:
                try:
                    with Image.open(_find(Path(root or "."), key)) as im:
                        thumb = thumbnail(im)
                except (OSError, ValueError) as exc:  # truncated, not an image, missing: verify names the file itself
                    self.unreadable[key] = str(exc)
                    continue
            known = Known(key, facts, thumb)
            self.known.append(known)
            self.by_hash.setdefault(average_hash(known.thumb), []).append(known)

    def save_index(self, path: Path) -> None:
        """Truth and thumbnails in one JSON file, so a process that starts per
        request (the fake codex) need not open every image again."""
        data = {k.key: {"truth": k.truth, "thumb": k.thumb.hex()} for k in self.known}
        Path(path).write_text(json.dumps(data), encoding="utf-8")

    @classmethod
    def load_index(cls, path: Path, policy: Policy | None = None) -> DemoModel:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls({k: v["truth"] for k, v in data.items()}, None, policy,
                   {k: bytes.fromhex(v["thumb"]) for k, v in data.items()})

    @classmethod
    def load(cls, truth_file: Path, root: Path | None = None, policy: Policy | None = None) -> DemoModel:
        truth = json.loads(Path(truth_file).read_text(encoding="utf-8"))
        return cls(truth, root or Path(truth_file).parent, policy)

    def identify(self, data: bytes) -> Known | None:
        try:
            with Image.open(io.BytesIO(data)) as im:
                thumb = thumbnail(im)
        except (OSError, ValueError):  # not an image, or pixels with no one way to show them
            return None
        best = None
        if len(self.known) > EXACT_UP_TO:
            # Large tables (the bench): the hash bucket and its one-bit neighbours
            # (a JPEG can flip a bit); trusted only when the match is close.
            h = average_hash(thumb)
            near = [k for probe in (h, *(h ^ (1 << b) for b in range(64))) for k in self.by_hash.get(probe, ())]
            best = _nearest(near, thumb)
            if best is not None and best[0] > CLOSE:
                best = None
        if best is None:  # exact: the nearest of all
            best = _nearest(self.known, thumb)
        return best[1] if best is not None and best[0] <= FAR else None

    @staticmethod
    def sees(known: Known | None, aspect: str) -> str | None:
        if known is None:
            return None
        return known.truth.get("model", {}).get(aspect, known.truth.get(aspect))

    def observe(self, known: Known | None, aspects: list[str], tags: list[str] | None = None,
                yes_sayer: bool = False) -> dict:
        """The observe answer; `tags` (the tags audit): each present when the
        truth's `tags` list holds it, else absent (`yes_sayer`: all present)."""
        out: dict[str, object] = {}
        for aspect in aspects:
            value = self.sees(known, aspect)
            borderline = bool(known) and aspect in known.truth.get("borderline", [])
            out[aspect] = {"value": value or CANNOT, "borderline": borderline}
        if tags is not None:
            shown = set(known.truth.get("tags", [])) if known else set()
            out["tags"] = {t: PRESENT if yes_sayer or t in shown else ABSENT if known else CANNOT for t in tags}
        out["note"] = None if known else "demo model: this image is not in its truth table"
        return out

    def answer_schema(self, known: Known | None, schema: dict, yes_sayer: bool = False) -> dict:
        """The observe answer for what a request's JSON schema asks: its aspects, and its tags when it has some."""
        props = schema.get("properties", {})
        aspects = [a for a in props if a not in ("note", "tags")]
        tags = list(props["tags"].get("properties", {})) if "tags" in props else None
        return self.observe(known, aspects, tags, yes_sayer)

    def fixline(self, known: Known | None, prompt: str, view_under_a: bool = False) -> str:
        """`OK` or `FIX: A=... (caption says ...)` for the lettered aspects of `prompt`."""
        if self.policy is None:
            raise ValueError("the fixline protocol needs the policy to read the caption")
        by_heading = {heading.split(" (")[0]: aspect for aspect, heading in HEADINGS.items()}
        letters = {m.group(1): by_heading.get(m.group(2).split(" (")[0], m.group(2).lower())
                   for m in _LETTER.finditer(prompt)}
        found = _CAPTION.search(prompt)
        claims = facts_from_caption(parse(found.group(1) if found else ""), self.policy)
        items = []
        framing_letter = next((ltr for ltr, a in letters.items() if a == "framing"), None)
        for letter, aspect in letters.items():
            claim = claims.get(aspect)
            shown = self.sees(known, aspect)
            if claim is None or shown == claim:
                continue
            mark = " (borderline)" if known and aspect in known.truth.get("borderline", []) else ""
            if view_under_a and aspect == "view" and framing_letter:
                letter = framing_letter  # the article's model put views under FRAMING
            items.append(f"{letter}={shown or CANNOT}{mark} (caption says {claim})")
        return "FIX: " + ", ".join(items) if items else "OK"
