"""A kohya-style fixture: repeat folders, one-line tagger captions, no policy, no sidecars.

`10_kanachan/` and `2_kanachan/` (repeats 10 and 2) hold drawn images
(the Keichan example's renderer, each stamped unique) and one-line captions
as a WD14-style tagger writes them: the trigger first, then tags.
truth.json says what each image shows (framing, and the tags the demo model
answers present; every other asked tag is absent). Planted:

- HALLUCINATED: a tag in the caption that the image does not show;
- SWAP: the bikini and the nude image carry each other's caption.
"""

from __future__ import annotations

import json
from pathlib import Path

from clothed47 import make_dataset, stamp

FEATURES = ["long hair", "blonde hair", "blue eyes"]
OUTFIT_TAGS = {
    "bikini": ["bikini", "swimsuit", "navel", "smile", "open mouth"],
    "nude": ["nude", "completely nude", "collarbone", "closed mouth", "arms behind back"],
    "school swimsuit": ["school swimsuit", "one-piece swimsuit", "smile"],
    "tshirt": ["shirt", "t-shirt", "shorts", "smile"],
    "dress": ["dress", "blue dress", "closed mouth"],
    "yukata": ["kimono", "yukata", "sash", "closed mouth"],
}
OUTFITS = list(OUTFIT_TAGS)
FRAMINGS = ["full body", "cowboy shot"]
BIKINI, NUDE = 0, 1  # the swapped pair (indices)
HALLUCINATED = {3: "glasses", 7: "hat", 10: "brown jacket"}  # index -> a tag the image does not show


def folder(i: int) -> str:
    return "2_kanachan" if i % 4 == 3 else "10_kanachan"


def name(i: int) -> str:
    return f"{folder(i)}/img{i:03d}.png"


def truth_row(i: int) -> dict:
    outfit = OUTFITS[i % len(OUTFITS)]
    framing = FRAMINGS[i % 2] if i > NUDE else "full body"
    return {"framing": framing, "view": "front", "facing": "forward", "expression": None, "outfit": outfit,
            "tags": [*FEATURES, *OUTFIT_TAGS[outfit]]}


def caption_tags(i: int) -> list[str]:
    row = truth_row(i)
    return ["kanachan", "1girl", "solo", *row["tags"], row["framing"]]


def make(root: Path, n: int = 12) -> dict[str, dict]:
    """Images, captions and truth.json under `root`; returns the truth."""
    truth, captions = {}, {}
    for i in range(n):
        row = truth_row(i)
        path = root / name(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        stamp(make_dataset.render({k: row[k] for k in ("framing", "view", "facing", "expression", "outfit")}),
              i).save(path)
        tags = caption_tags(i)
        if i in HALLUCINATED:
            tags.insert(6, HALLUCINATED[i])
        captions[i] = ", ".join(tags) + "\n"
        truth[name(i)] = row
    captions[BIKINI], captions[NUDE] = captions[NUDE], captions[BIKINI]
    for i, text in captions.items():
        (root / name(i)).with_suffix(".txt").write_text(text, encoding="utf-8")
    (root.parent / f"{root.name}.truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def truth_file(root: Path) -> Path:
    return root.parent / f"{root.name}.truth.json"
