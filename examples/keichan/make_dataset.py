"""Make the Keichan example dataset: a dozen synthetic images with sidecars.

    python examples/keichan/make_dataset.py [OUT]   (default: examples/keichan/dataset)

The layout and the prompts follow the first article: 01_bust_front (front
bust-ups varying only in expression), 02_clothed_pose (outfits and angles,
prompts asking for full body that the "model" often delivered as a cowboy
shot) and 03_nude_angles. The pictures are drawn shapes, not art: what
matters is that each is cropped by its TRUE framing (feet in frame or not),
so sorting them by eye is a real judgement. `truth.json` beside this script
holds what each image really shows (and, for one image, the borderline call
the demo model makes); the demo vision server and the tests answer from it. Deterministic: same Pillow, same bytes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent

BASE = ("1girl, solo, teenager, blonde hair, long hair, blue eyes, blunt bangs, (hair intakes:1.5), "
        "long sidelocks, half updo, braid, blue ribbon")
TAIL = ("simple background, white background, flat color, even lighting, ambient lighting, plain lighting, "
        "studio lighting, official art style, clean lineart")
NEGATIVE = ("minase nayuki, blue hair, navy hair, black hair, dark hair, (ahoge:1.5), antenna hair, (hime cut:1.3), "
            "(crossed bangs:1.4), parted bangs, swept bangs, short sidelocks, short hair, (mature:1.3), (adult:1.3)")

# name: (folder, prompt middle, truth). The truth is what the picture shows.
ITEMS = {
    "010001": ("01_bust_front/available",
               "bare shoulders, nude, bust shot, head and shoulders, face focus, close to head, front view, "
               "looking at viewer, smile",
               dict(framing="portrait", view="front", facing="forward", expression="smile", outfit="nude")),
    "010002": ("01_bust_front/available",
               "bare shoulders, nude, bust shot, head and shoulders, face focus, close to head, front view, "
               "looking at viewer, calm, closed mouth",
               dict(framing="portrait", view="front", facing="forward", expression="calm", outfit="nude")),
    "010003": ("01_bust_front/available",
               "bare shoulders, nude, bust shot, head and shoulders, face focus, close to head, front view, "
               "looking at viewer, (angry:1.2), v-shaped eyebrows",
               dict(framing="portrait", view="front", facing="forward", expression="angry", outfit="nude")),
    "010004": ("01_bust_front/available",
               "bare shoulders, nude, bust shot, head and shoulders, face focus, close to head, front view, "
               "sideways glance, light smile",
               dict(framing="portrait", view="front", facing="forward", expression="soft smile", outfit="nude")),
    "020101": ("02_clothed_pose/available",
               "school swimsuit, (full body:1.5), shot with full body, standing, front view, looking at viewer, "
               "smile, developed body, slim figure, curved waist",
               dict(framing="cowboy shot", view="front", facing="forward", expression="smile",
                    outfit="school swimsuit")),
    "020102": ("02_clothed_pose/available",
               "bikini, (full body:1.5), shot with full body, standing, (three quarters view:1.5), "
               "body turned to the left, looking at viewer, light smile, proportional body",
               dict(framing="full body", view="three-quarter", facing="left", expression="soft smile",
                    outfit="bikini")),
    "020103": ("02_clothed_pose/available",
               "t-shirt, white shirt, denim shorts, (full body:1.5), shot with full body, standing, "
               "(three quarters view:1.5), body turned to the right, looking at viewer, smile",
               dict(framing="cowboy shot", view="three-quarter", facing="left", expression="smile",
                    outfit="tshirt")),
    "020104": ("02_clothed_pose/available",
               "yukata, (full body:1.5), shot with full body, standing, full profile, body facing right, calm",
               # The feet are in frame, but the demo model calls it a borderline cowboy shot (the
               # article's "strict Danbooru judgement vs the eye"): a person settles it by folder sort.
               dict(framing="full body", view="profile", facing="right", expression="calm", outfit="yukata",
                    borderline=["framing"], model={"framing": "cowboy shot"})),
    "020105": ("02_clothed_pose/available",
               "gym uniform, buruma, (full body:1.5), shot with full body, standing, from behind, looking back",
               dict(framing="full body", view="from behind", facing="back", expression=None, outfit="gym")),
    "020106": ("02_clothed_pose/available",
               "blue dress, (full body:1.5), shot with full body, standing, front view, "
               "looking at viewer, soft smile",
               dict(framing="cowboy shot", view="front", facing="forward", expression="neutral", outfit="dress")),
    "030201": ("03_nude_angles",
               "nude, completely nude, (full body:1.5), standing, (three quarters view:1.5), "
               "body turned to the right, looking at viewer, calm, womanly figure",
               dict(framing="full body", view="three-quarter", facing="right", expression="calm", outfit="nude")),
    "030202": ("03_nude_angles",
               "nude, completely nude, (full body:1.5), standing, from behind, back",
               dict(framing="full body", view="from behind", facing="back", expression=None, outfit="nude")),
}

SKIN, HAIR, EYE, RIBBON, INK = (255, 224, 200), (246, 206, 84), (60, 120, 220), (40, 90, 220), (60, 40, 40)
OUTFIT_COLOURS = {
    "nude": (SKIN, SKIN), "school swimsuit": ((30, 40, 90), SKIN), "bikini": ((240, 120, 170), SKIN),
    "tshirt": ((245, 245, 245), (70, 100, 160)), "yukata": ((200, 60, 70), (200, 60, 70)),
    "gym": ((245, 245, 245), (30, 40, 110)), "dress": ((150, 200, 240), (150, 200, 240)),
}
# Where each framing cuts the figure (fraction of its height from the top).
CUT = {"portrait": 0.24, "upper body": 0.42, "cowboy shot": 0.66, "full body": 1.02}
W, H = 512, 768


def draw_figure(truth: dict) -> Image.Image:
    """A figure 1400 px tall on a tall white canvas, drawn for its view."""
    world = Image.new("RGB", (900, 1500), "white")
    d = ImageDraw.Draw(world)
    cx, top, view = 450, 40, truth["view"]
    shift = {"left": -40, "right": 40}.get(truth["facing"], 0)
    top_colour, bottom_colour = OUTFIT_COLOURS[truth["outfit"]]
    d.polygon([(cx - 120, 560), (cx + 120, 560), (cx + 95, 900), (cx - 95, 900)], fill=bottom_colour)  # hips
    d.rectangle([cx - 120, 330, cx + 120, 600], fill=top_colour)  # torso
    for side in (-1, 1):  # arms, legs, feet
        d.rectangle([cx + side * 120 - (30 if side > 0 else 0) - (0 if side > 0 else 30), 340,
                     cx + side * 150 + (0 if side > 0 else 30) - (30 if side > 0 else 0) + 30 * (side < 0), 700],
                    fill=SKIN)
        d.rectangle([cx + side * 55 - 40, 880, cx + side * 55 + 40, 1400], fill=SKIN)
        d.ellipse([cx + side * 55 - 55, 1380, cx + side * 55 + 55, 1440], fill=INK)
    d.rectangle([cx - 35, 260, cx + 35, 340], fill=SKIN)  # neck
    d.ellipse([cx - 130, top, cx + 130, top + 260], fill=HAIR)  # hair mass
    for side in (-1, 1):  # long hair intakes past the shoulders
        d.polygon([(cx + side * 100, top + 80), (cx + side * 160, top + 120), (cx + side * 150, 470),
                   (cx + side * 110, 470)], fill=HAIR)
    if view == "from behind":
        d.line([(cx, top + 60), (cx, top + 230)], fill=(220, 170, 60), width=14)  # braid
        d.polygon([(cx - 45, top + 190), (cx + 45, top + 190), (cx, top + 225)], fill=RIBBON)
        return world
    face = [cx - 95 + shift, top + 55, cx + 95 + shift, top + 250]
    d.ellipse(face, fill=SKIN)
    d.rectangle([cx - 95 + shift, top + 40, cx + 95 + shift, top + 110], fill=HAIR)  # blunt bangs
    d.polygon([(cx + 120, top + 20), (cx + 170, top), (cx + 165, top + 50)], fill=RIBBON)
    eyes = [-40, 40] if view != "profile" else [40 if truth["facing"] == "right" else -40]
    for ex in eyes:
        d.ellipse([cx + ex + shift - 16, top + 130, cx + ex + shift + 16, top + 165], fill=EYE)
    mouth = (cx + shift - 30, top + 195, cx + shift + 30, top + 225)
    expression = truth["expression"]
    if expression in ("smile", "soft smile"):
        d.arc(mouth, 10, 170, fill=INK, width=6 if expression == "smile" else 3)
    elif expression == "angry":
        d.arc(mouth, 190, 350, fill=INK, width=6)
        for ex, slope in ((-40, 1), (40, -1)):
            d.line([(cx + ex + shift - 22, top + 112 - 10 * slope), (cx + ex + shift + 22, top + 112 + 10 * slope)],
                   fill=INK, width=6)
    else:
        d.line([(mouth[0] + 10, top + 210), (mouth[2] - 10, top + 210)], fill=INK, width=4)
    return world


def render(truth: dict) -> Image.Image:
    world = draw_figure(truth)
    bottom = int(40 + 1400 * CUT[truth["framing"]])
    height = bottom - 20
    width = height * W // H
    left = 450 - width // 2
    box = (left, 20, left + width, 20 + height)
    canvas = Image.new("RGB", (box[2] - box[0], box[3] - box[1]), "white")
    canvas.paste(world.crop((max(box[0], 0), box[1], min(box[2], 900), box[3])), (max(-box[0], 0), 0))
    return canvas.resize((W, H), Image.Resampling.LANCZOS)


def sidecar(name: str, middle: str, index: int) -> dict:
    prompt = f"{BASE}, {middle}, {TAIL}"
    if index % 5 == 3:  # an A1111-style sidecar: positive prompt up to `Negative prompt:`
        return {"parameters": f"{prompt}\nNegative prompt: {NEGATIVE}\nSteps: 30, Sampler: er_sde, "
                              f"CFG scale: 4, Seed: {1000 + index}, Size: 832x1216, Model: waiANIMA_v10"}
    key = "positive" if index % 5 == 1 else "prompt"
    return {key: prompt, "negative_prompt": NEGATIVE, "seed": 1000 + index, "model": "waiANIMA_v10",
            "width": 832, "height": 1216}


def make(out: Path) -> dict[str, dict]:
    truth = {}
    for index, (name, (folder, middle, facts)) in enumerate(ITEMS.items()):
        target = out / folder
        target.mkdir(parents=True, exist_ok=True)
        render(facts).save(target / f"{name}.png", optimize=True)
        (target / f"{name}.json").write_text(json.dumps(sidecar(name, middle, index), indent=2) + "\n")
        truth[f"{folder}/{name}.png"] = facts
    return truth


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "dataset"
    truth = make(out)
    if len(sys.argv) == 1:  # regenerating the shipped example: its truth too
        (HERE / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    print(f"wrote {len(truth)} images with sidecars under {out}")
