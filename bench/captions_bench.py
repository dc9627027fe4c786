"""Caption build and lint throughput, and `capcheck lint DIR` as a user runs it.

    python bench/captions_bench.py [--n 10000] [--tags PATH] [--repeat 3] [--no-command]

Builds N captions from article-shaped sidecar prompts with the Keichan
policy and writes them as N files beside N (empty) images. Then, each
timing the best of --repeat runs, each run in a fresh process (lint
remembers per-tag answers while a process lives: a warm second pass in the
same process would flatter it), next to a baseline measured in the same
run on the same captions:

- lint (library): `lint_text` over the N captions held in memory, with the
  full Danbooru tag CSV when found, against a bare loop that cuts them into
  lines and comma-separated items (the least any rule does);
- lint_dataset: the same, read from the folder;
- `capcheck lint DIR --policy P --tags CSV`, start to exit, against a bare
  Python process that walks the same folder, reads every caption and loads
  the same tag CSV (the floor of the command: interpreter, files, CSV).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captions import Vocabulary, caption_from_prompt, load_policy

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TAGS = ROOT.parent / "shared" / "data" / "danbooru-tags" / "danbooru.csv"
POLICY = ROOT / "examples" / "keichan" / "policy.yaml"

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

# The command's floor: what any `capcheck lint DIR --tags CSV` must do before its first rule.
BARE = """
import sys
from pathlib import Path
from captions.vocab import Vocabulary
texts = [p.read_text(encoding="utf-8") for p in sorted(Path(sys.argv[1]).rglob("*.txt"))]
vocab = Vocabulary.load(Path(sys.argv[2]))
print(len(texts), len(vocab))
"""


# One library timing in a fresh process: what it prints is {"s": seconds, "findings": n}.
CHILD = """
import json, sys, time
from pathlib import Path
from captions import Vocabulary, lint_dataset, lint_text, load_policy
mode, root, tags, policy = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), load_policy(Path(sys.argv[4]))
vocab = Vocabulary.load(tags) if tags.exists() else None
paths = sorted(root.glob("*.txt"))
texts = [p.read_text(encoding="utf-8") for p in paths]
t0 = time.perf_counter()
if mode == "split":  # the least any rule does: every caption cut into lines and comma-separated items
    found = len([[item.strip() for line in text.splitlines() for item in line.split(",")] for text in texts]) * 0
elif mode == "lint":
    found = sum(len(lint_text(Path(p.name), text, policy, vocab)) for p, text in zip(paths, texts))
else:
    found = len(lint_dataset(root, policy, vocab))
print(json.dumps({"s": time.perf_counter() - t0, "findings": found}))
"""


def prompts(n: int) -> list[str]:
    out = []
    for i in range(n):
        out.append(f"{CORE}, {OUTFITS[i % 9]}, {FRAMINGS[i % 4]}, {ANGLES[(i // 4) % 4]}, {EXPRESSIONS[i % 8]}, "
                   f"{POSES[i % 6]}, {POSES[(i + 2) % 6]}, slim figure, {TAIL}")
    return out


def best(repeat: int, fn) -> tuple[float, object]:
    """The shortest of `repeat` runs (the machine is shared: the least disturbed one), and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def run(argv: list[str]) -> int:
    return subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ).returncode


def cold(repeat: int, mode: str, root: Path, tags: Path) -> tuple[float, int]:
    """The best of `repeat` fresh processes timing one library call (`CHILD`), and its findings."""
    runs = []
    for _ in range(repeat):
        proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(root), str(tags), str(POLICY)],
                              capture_output=True, text=True, env=os.environ, check=True)
        runs.append(json.loads(proc.stdout.splitlines()[-1]))
    return min(r["s"] for r in runs), runs[-1]["findings"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--tags", type=Path, default=DEFAULT_TAGS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-command", action="store_true", help="skip timing `capcheck lint DIR` (the library only)")
    args = ap.parse_args()
    n, repeat, tags = args.n, args.repeat, args.tags
    policy = load_policy(POLICY)
    items = prompts(n)

    t0 = time.perf_counter()
    captions = [caption_from_prompt(p, policy)[1] for p in items]
    build_s = time.perf_counter() - t0
    print(f"build: {n} captions in {build_s:.2f} s = {n / build_s:,.0f} captions/s")
    if tags.exists():
        t0 = time.perf_counter()
        vocab = Vocabulary.load(tags)
        print(f"tag CSV: {len(vocab):,} tags, {len(vocab.aliases):,} aliases loaded in "
              f"{time.perf_counter() - t0:.3f} s")
    else:
        print(f"tag CSV not found at {tags}: lint runs without unknown-tag")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "dataset")
        root.mkdir()
        for i, text in enumerate(captions):
            (root / f"{i:05d}.txt").write_text(text, encoding="utf-8")
            (root / f"{i:05d}.png").touch()  # lint reads captions beside images, never the pixels
        print(f"each figure below: the best of {repeat} runs, each in a fresh process")
        split_s, _ = cold(repeat, "split", root, tags)
        lint_s, findings = cold(repeat, "lint", root, tags)
        print(f"lint: {n} captions in {lint_s:.2f} s = {n / lint_s:,.0f} captions/s ({lint_s / n * 1e3:.3f} ms each), "
              f"{findings} findings")
        print(f"  baseline, a bare loop cutting the same captions into lines and items: {split_s:.3f} s; "
              f"lint = {lint_s / split_s:.0f}x that")
        dataset_s, found = cold(repeat, "dataset", root, tags)
        print(f"lint_dataset: {n} caption files in {dataset_s:.2f} s, {found} findings; "
              f"{dataset_s / lint_s:.2f}x lint_text over the same captions in memory")
        if not args.no_command and tags.exists():
            command = [sys.executable, "-m", "verifier.cli.main", "lint", str(root), "--policy", str(POLICY),
                       "--tags", str(tags)]
            command_s, code = best(repeat, lambda: run(command))
            bare_s, bare_code = best(repeat, lambda: run([sys.executable, "-c", BARE, str(root), str(tags)]))
            if bare_code != 0 or code not in (0, 1):
                raise SystemExit(f"a timed process failed: capcheck lint exited {code}, the bare reader {bare_code}")
            print(f"capcheck lint DIR: {command_s:.2f} s start to exit (exit {code})")
            print(f"  baseline, a bare process reading the {n} captions and the tag CSV: {bare_s:.2f} s; "
                  f"the command = {command_s / bare_s:.2f}x, {command_s - bare_s:.2f} s over it "
                  f"(the library's lint_dataset: {dataset_s:.2f} s)")
    print(f"peak RSS (this process: build, CSV): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
