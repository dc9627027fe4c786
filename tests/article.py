"""A dataset shaped like the first article's: 39 bust / 47 clothed / 5 nude sidecars.

Images are tiny placeholders (build never opens them). The prompts follow
the article: busts identical but for the expression (4 with a sideways
glance), clothed poses over eight outfits that all ask for full body, five
nude angles.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

CORE = ("1girl, solo, teenager, blonde hair, long hair, blue eyes, blunt bangs, (hair intakes:1.5), long sidelocks, "
        "half updo, braid, blue ribbon")
TAIL = "simple background, white background, flat color, even lighting, studio lighting, official art style"
BUST = "bare shoulders, nude, bust shot, head and shoulders, face focus, close to head, front view, looking at viewer"
EXPRESSIONS = ["smile", "calm", "(angry:1.2)", "light smile", "annoyed", "frown", "neutral", "surprised"]
OUTFITS = ["school swimsuit", "bikini", "gym uniform, buruma", "leotard", "t-shirt, shorts", "blue dress", "yukata",
           "sweater vest, preppy"]
ANGLES = ["front view", "(three quarters view:1.5), body turned to the left",
          "(three quarters view:1.5), body turned to the right", "full profile, body facing left", "from behind"]


def make_article_dataset(root: Path) -> dict[str, str]:
    """Write the sidecars and placeholder images; return {relative path: folder kind}."""
    kinds = {}

    def put(folder: str, name: str, prompt: str, kind: str) -> None:
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 12), "white").save(d / f"{name}.png")
        (d / f"{name}.json").write_text(json.dumps({"prompt": prompt, "seed": len(kinds)}))
        kinds[f"{folder}/{name}.png"] = kind

    for i in range(39):
        glance = ", sideways glance" if i < 4 else ""
        put("01_bust_front/available", f"01{i:04d}", f"{CORE}, {BUST}{glance}, {EXPRESSIONS[i % 8]}, {TAIL}", "bust")
    for i in range(47):
        framing = "(full body:1.5), shot with full body" if i < 45 else "upper body"
        body = ", developed body, slim figure, curved waist" if i % 3 == 0 else ""
        prompt = f"{CORE}, {OUTFITS[i % 8]}, {framing}, standing, {ANGLES[i % 5]}, {EXPRESSIONS[i % 4]}{body}, {TAIL}"
        put("02_clothed_pose/available", f"02{i:04d}", prompt, "clothed")
    for i in range(5):
        prompt = f"{CORE}, nude, (full body:1.5), {ANGLES[i]}, calm, womanly figure, proportional body, {TAIL}"
        put("03_nude_angles", f"03{i:04d}", prompt, "nude")
    return kinds
