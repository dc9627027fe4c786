"""eval's overhead per sample against verify's, measured in the same run on the same images.

    python bench/eval_bench.py [--images 64] [--concurrency 6] [--latency 0.5]

N distinct 832x1216 PNGs, each with a caption (for verify) and ComfyUI's
`prompt` graph (for eval), in two copies of one folder. The loopback demo
server (its own process, a fixed latency) answers both. Timed, each as the
user runs it (the command, start to exit, in a child process):
`capcheck verify --aspects framing,tags` (one request per image, with the
tags question) and `capcheck eval --samples` (one request per sample:
metadata read, checklist, preparation, request, scoring, reports). Printed:
each wall time per image and eval's as a ratio of verify's; then each run
again, answered from the store.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

POLICY = ROOT / "examples" / "keichan" / "policy.yaml"
SIZE = (832, 1216)
PROMPT = "keichan, 1girl, solo, upper body, standing"
CAPTION = ("masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\nA girl standing.\n"
           "blunt bangs, braid, blue ribbon,\nstanding, upper body,\nwhite background, simple background\n")


def make(root: Path, n: int) -> None:
    from eval_files import comfy_graph

    from verifier.demo.blocks import blocks, noise

    rng = random.Random(n)
    texture = noise(SIZE)
    truth = {}
    root.mkdir(parents=True)
    for i in range(n):
        image = Image.blend(blocks(rng, SIZE), texture, 0.25)
        info = PngInfo()
        lora = [(f"keichan_epoch{1 + i % 4:03d}.safetensors", 1.0)] if i % 5 else []
        info.add_text("prompt", json.dumps(comfy_graph(PROMPT, "worst quality, ahoge", 40 + i, lora)))
        image.save(root / f"{i:04d}.png", pnginfo=info)
        (root / f"{i:04d}.txt").write_text(CAPTION)
        truth[f"{i:04d}.png"] = {"framing": "upper body", "tags": ["blonde hair", "long hair", "braid"]}
    (root / "truth.json").write_text(json.dumps(truth))


def timed(*args: str) -> float:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "verifier.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT)
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"failed: capcheck {' '.join(args)}\n{done.stderr}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--latency", type=float, default=0.5, help="the server's fixed latency, seconds")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="capcheck-eval-bench-"))
    try:
        make(work / "verify", args.images)
        shutil.copytree(work / "verify", work / "eval")
        server = subprocess.Popen([sys.executable, "-m", "verifier.demo.server", "--truth",
                                   str(work / "verify" / "truth.json"), "--latency", str(args.latency)],
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT)
        url = server.stdout.readline().strip()
        common = ["--policy", str(POLICY), "--model", "demo-vision", "--base-url", url, "--concurrency",
                  str(args.concurrency)]
        try:
            rows = []
            for label in ("first run", "from the store"):
                v = timed("verify", str(work / "verify"), "--aspects", "framing,tags", *common)
                e = timed("eval", "--samples", str(work / "eval"), "--aspects", "framing", "--must-show",
                          "blonde hair, long hair", *common)
                rows.append((label, v, e))
        finally:
            server.terminate()
            server.wait()
        n = args.images
        print(f"{n} images of {SIZE[0]}x{SIZE[1]}, concurrency {args.concurrency}, server latency {args.latency} s")
        print("| run | verify | eval | verify / image | eval / image | eval / verify |")
        print("|---|---|---|---|---|---|")
        for label, v, e in rows:
            print(f"| {label} | {v:.2f} s | {e:.2f} s | {v / n * 1000:.1f} ms | {e / n * 1000:.1f} ms | "
                  f"{e / v:.3f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
