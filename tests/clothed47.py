"""A 47-image fixture whose truth mirrors the first article's 02_clothed_pose.

Every prompt asked for full body except four; the images really show
21 full body, 24 cowboy shots (22 of them prompted full body) and 2 upper
body, as the article's hand sort found. Planted besides: two facing errors
(prompted left, turned right), one view error (prompted profile, drawn
three-quarter) and one expression error (prompted soft smile, drawn
neutral). Images are drawn by the Keichan example's renderer, cropped by
their TRUE framing. EXPECTED lists, by hand, the fix items a correct verify
must report.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from conftest import EXAMPLES

_spec = importlib.util.spec_from_file_location("make_dataset", EXAMPLES / "keichan" / "make_dataset.py")
make_dataset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_dataset)

FOLDER = "02_clothed_pose/available"
OUTFITS = [("school swimsuit", "school swimsuit"), ("bikini", "bikini"), ("tshirt", "t-shirt, denim shorts"),
           ("yukata", "yukata"), ("gym", "gym uniform, buruma"), ("dress", "blue dress")]
# (view, facing, prompt words)
ANGLES = [("front", "forward", "front view, looking at viewer"),
          ("three-quarter", "left", "(three quarters view:1.5), body turned to the left"),
          ("three-quarter", "right", "(three quarters view:1.5), body turned to the right"),
          ("profile", "left", "full profile, body facing left"),
          ("from behind", "back", "from behind")]
EXPRESSIONS = [("smile", "smile"), ("soft smile", "light smile"), ("calm", "calm, closed mouth")]


def _row(i: int) -> dict:
    view, facing, angle_words = ANGLES[i % 5]
    expression, expression_words = EXPRESSIONS[i % 3]
    if view == "from behind":
        expression, expression_words = None, ""
    outfit, outfit_words = OUTFITS[i % 6]
    if i < 21:
        framing, framing_words = "full body", "(full body:1.5), shot with full body"
    elif i < 43:
        framing, framing_words = "cowboy shot", "(full body:1.5), shot with full body"  # the 22 liars
    elif i < 45:
        framing, framing_words = "cowboy shot", "cowboy shot"
    else:
        framing, framing_words = "upper body", "upper body"
    truth = dict(framing=framing, view=view, facing=facing, expression=expression, outfit=outfit)
    prompt = ", ".join(w for w in (outfit_words, framing_words, "standing", angle_words, expression_words) if w)
    return {"name": f"02{i:04d}", "truth": truth, "prompt": prompt}


def rows() -> list[dict]:
    out = [_row(i) for i in range(47)]
    # Planted: the prompt says left, the image turns right (on two of the cowboy-shot liars).
    for i in (21, 26):
        assert out[i]["truth"]["view"] == "three-quarter" and out[i]["truth"]["facing"] == "left"
        out[i]["truth"]["facing"] = "right"
    # The prompt says profile, the image is a three-quarter view.
    assert out[3]["truth"]["view"] == "profile"
    out[3]["truth"]["view"] = "three-quarter"
    # The prompt says soft smile, the face is neutral (the article's C=neutral).
    assert out[1]["truth"]["expression"] == "soft smile"
    out[1]["truth"]["expression"] = "neutral"
    return out


EXPECTED = {  # (aspect, image shows, caption says) -> how many
    ("framing", "cowboy shot", "full body"): 22,
    ("facing", "right", "left"): 2,
    ("view", "three-quarter", "profile"): 1,
    ("expression", "neutral", "soft smile"): 1,
}
EXPECTED_FIX_IMAGES = 24  # 22 framing (two also facing) + the view one + the expression one


def expected_items() -> dict[str, set[tuple[str, str, str]]]:
    """Per image, the fix items, written from the planted table above."""
    out: dict[str, set] = {}
    for i in range(21, 43):
        out.setdefault(f"{FOLDER}/02{i:04d}.png", set()).add(("framing", "cowboy shot", "full body"))
    for i in (21, 26):
        out[f"{FOLDER}/02{i:04d}.png"].add(("facing", "right", "left"))
    out[f"{FOLDER}/020003.png"] = {("view", "three-quarter", "profile")}
    out[f"{FOLDER}/020001.png"] = {("expression", "neutral", "soft smile")}
    return out


def stamp(image, index: int):
    """Every image unique (two rows share a truth, so their drawings match): the
    index as six black/white blocks along the top edge, coarse enough to
    survive resizing and JPEG, so a server can tell the two apart."""
    from PIL import ImageDraw

    draw = ImageDraw.Draw(image)
    width = image.width // 8
    for bit in range(6):
        if index >> bit & 1:
            draw.rectangle([width * (bit + 1), 0, width * (bit + 2) - 1, image.height // 8 - 1], fill=(0, 0, 0))
    return image


def make(root: Path) -> dict[str, dict]:
    """Images, sidecars and truth.json under `root`; returns the truth."""
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for index, row in enumerate(rows()):
        stamp(make_dataset.render(row["truth"]), index).save(folder / f"{row['name']}.png")
        prompt = f"{make_dataset.BASE}, {row['prompt']}, {make_dataset.TAIL}"
        (folder / f"{row['name']}.json").write_text(json.dumps({"prompt": prompt}))
        truth[f"{FOLDER}/{row['name']}.png"] = row["truth"]
    (root / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth
