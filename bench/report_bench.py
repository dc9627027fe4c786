"""What the self-contained reports cost: thumbnails and the review page.

    python bench/report_bench.py [--n 50] [--size 832x1216]

Writes N images of the given size (an Anima/SDXL portrait by default) with
captions into a scratch folder, then times, in the same run:

- `write_reports` the first time (every thumbnail made) against the second
  time (every thumbnail reused): the cost a new image adds to a report;
- the reports folder's size against the images' (what a person sends);
- the review page (`capcheck review`) rendered over N routed images, the
  first load (every file hashed) against a reload (hashes remembered).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from captions import load_policy
from verifier.core.images import sha256_file
from verifier.core.observation import AspectObservation, Observation
from verifier.core.report import reports_dir, write_reports
from verifier.core.results import ASKED, ItemResult, RunResult
from verifier.core.verdict import FIX, FixItem, Verdict
from verifier.human.review import ReviewTree
from verifier.human.review_page import render

ROOT = Path(__file__).resolve().parent.parent
CAPTION = "masterpiece,\n1girl, solo, keichan,\nsmile, full body,\nwhite background\n"


def make_images(root: Path, n: int, size: tuple[int, int]) -> list[ItemResult]:
    rng = random.Random(0)
    results = []
    for i in range(n):
        # Grain over flat shapes: a PNG about as heavy as a generated picture (MBs, not KBs).
        image = Image.merge("RGB", [Image.effect_noise(size, 30 + i % 7)] * 3)
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = rng.randrange(size[0]), rng.randrange(size[1])
            draw.ellipse((x, y, x + rng.randrange(20, 300), y + rng.randrange(20, 300)),
                         fill=tuple(rng.randrange(256) for _ in range(3)))
        path = root / f"{i:05d}.png"
        image.save(path)
        path.with_suffix(".txt").write_text(CAPTION)
        verdict = Verdict(FIX, (FixItem("framing", "full body", "cowboy shot", True),), None,
                          Observation({"framing": AspectObservation("cowboy shot", True)}), {"framing": "full body"})
        results.append(ItemResult(path.name, sha256_file(path), "c" * 64, verdict, ASKED))
    return results


def size_of(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.rglob(pattern) if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--size", default="832x1216")
    args = ap.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    policy = load_policy(ROOT / "examples" / "keichan" / "policy.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        root.mkdir()
        results = make_images(root, args.n, size)
        run = RunResult(1, "openai", "m", "observe", results, {}, 0.0, 0, 0)

        t0 = time.perf_counter()
        write_reports(root, run, policy)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_reports(root, run, policy)
        warm = time.perf_counter() - t0
        print(f"report of {args.n} images {args.size}: first {cold:.2f} s (thumbnails made), "
              f"again {warm:.2f} s (reused): {cold / warm:.1f}x; {1000 * (cold - warm) / args.n:.1f} ms per new image")
        images, reports = size_of(root, "*.png"), size_of(reports_dir(root), "*")
        thumbs = size_of(reports_dir(root) / "thumbs", "*.jpg")
        print(f"reports folder {reports / 1e6:.1f} MB ({thumbs / args.n / 1e3:.0f} kB a thumbnail) for "
              f"{images / 1e6:.1f} MB of images ({reports / images:.1%}): self-contained")

        review = root / "_review" / "framing" / "cowboy_shot"
        review.mkdir(parents=True)
        for r in results:
            os.link(root / r.image, review / r.image)
        t0 = time.perf_counter()
        tree = ReviewTree(root, policy)
        render(tree)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        render(tree)
        again = time.perf_counter() - t0
        print(f"review page over {args.n} images: first load {first:.2f} s (hashed), reload {again:.2f} s: "
              f"{first / again:.1f}x")
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
