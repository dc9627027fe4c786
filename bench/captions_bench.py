"""Caption build and lint throughput.

    python bench/captions_bench.py [--n 10000] [--tags PATH]

Builds N captions from article-shaped sidecar prompts with the Keichan
policy, then lints all N (with the full Danbooru tag CSV when found) and
prints the figures. No files are written: this measures the library.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

from captions import Vocabulary, caption_from_prompt, lint_text, load_policy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TAGS = ROOT.parent / "shared" / "data" / "danbooru-tags" / "danbooru.csv"

CORE = ("1girl, solo, teenager, blonde hair, long hair, blue eyes, blunt bangs, (hair intakes:1.5), long sidelocks, "
        "half updo, braid, blue ribbon")
TAIL = "simple background, white background, flat color, even lighting, studio lighting, official art style"
FRAMINGS = ["bust shot, head and shoulders, face focus", "(full body:1.5), shot with full body", "cowboy shot",
            "upper body"]
ANGLES = ["front view", "(three quarters view:1.5), body turned to the left", "full profile, body facing right",
          "from behind"]
EXPRESSIONS = ["smile", "calm", "(angry:1.2)", "light smile", "annoyed", "frown", "neutral", "surprised"]
OUTFITS = ["nude", "school swimsuit", "bikini", "gym uniform, buruma", "leotard", "t-shirt, shorts", "blue dress",
           "yukata", "sweater vest"]
POSES = ["standing", "sitting", "hand on own hip", "arms behind back", "looking at viewer", "running"]


def prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(f"{CORE}, {OUTFITS[i % 9]}, {FRAMINGS[i % 4]}, {ANGLES[(i // 4) % 4]}, {EXPRESSIONS[i % 8]}, "
                   f"{POSES[i % 6]}, {POSES[(i + 2) % 6]}, slim figure, {TAIL}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--tags", type=Path, default=DEFAULT_TAGS)
    args = ap.parse_args()
    policy = load_policy(ROOT / "examples" / "keichan" / "policy.yaml")
    items = prompts(args.n)

    t0 = time.perf_counter()
    captions = [caption_from_prompt(p, policy)[1] for p in items]
    build_s = time.perf_counter() - t0
    print(f"build: {args.n} captions in {build_s:.2f} s = {args.n / build_s:,.0f} captions/s")

    vocab = None
    if args.tags.exists():
        t0 = time.perf_counter()
        vocab = Vocabulary.load(args.tags)
        print(f"tag CSV: {len(vocab):,} tags, {len(vocab.aliases):,} aliases loaded in "
              f"{time.perf_counter() - t0:.3f} s")
    else:
        print(f"tag CSV not found at {args.tags}: lint runs without unknown-tag")

    t0 = time.perf_counter()
    findings = 0
    for i, text in enumerate(captions):
        findings += len(lint_text(Path(f"{i:05d}.txt"), text, policy, vocab))
    lint_s = time.perf_counter() - t0
    print(f"lint: {args.n} captions in {lint_s:.2f} s = {args.n / lint_s:,.0f} captions/s "
          f"({lint_s / args.n * 1e3:.3f} ms each), {findings} findings")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
