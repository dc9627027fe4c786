"""What the crash-safe journal costs `apply`: the command, start to exit.

    python bench/apply_bench.py [--n 200] [--repeat 3]

Makes N images whose captions all need a fix, verifies them once against
the loopback demo server, then times, in the same run and on the same copy:

- `capcheck apply --dry-run` (read, verify hashes, edit, diff: everything
  but the writes) against `capcheck apply` (each caption: intent committed
  with a full fsync, temp file fsynced and renamed, intent marked done),
  then `capcheck undo` (the same protocol the other way);
- the bare limit of the writes: N `atomic_write` calls (temp + fsync +
  rename, no journal) against N journaled `write_caption` calls.

Ratios > 1 are what the journal adds over its baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from captions import load_policy
from captions.journal import atomic_write, write_caption
from verifier.core.report import write_reports
from verifier.core.store import Store
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.demo.blocks import CAPTION as BLOCKS_CAPTION
from verifier.demo.blocks import make_blocks
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

ROOT = Path(__file__).resolve().parent.parent
CAPTION = BLOCKS_CAPTION.format(framing="full body")


def timed(*args: str) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "verifier.cli.main", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    took = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{args[0]} failed: {proc.stdout}{proc.stderr}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    policy = load_policy(ROOT / "examples" / "keichan" / "policy.yaml")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "data"
        make_blocks(root, args.n, size=(64, 96), seen=lambda i: {"framing": "cowboy shot"})
        with DemoServer(DemoModel.load(root / "truth.json", root, policy)) as server, Store(root) as store:
            opts = VerifyOptions(model="demo-vision", base_url=server.url, aspects=["framing"], concurrency=8)
            write_reports(root, asyncio.run(verify_dataset(root, policy, opts, store)), policy)
        rows = []
        for _ in range(args.repeat):
            dry = timed("apply", str(root), "--dry-run")
            real = timed("apply", str(root))
            undo = timed("undo", str(root))
            rows.append((dry, real, undo))
        bare_dir, journaled_dir = Path(scratch) / "bare", Path(scratch) / "journaled"
        bare_dir.mkdir()
        shutil.copytree(root / "images", journaled_dir, ignore=shutil.ignore_patterns("*.png"))
        started = time.perf_counter()
        for i in range(args.n):
            atomic_write(bare_dir / f"{i:04d}.txt", CAPTION.replace("full body", "cowboy shot"))
        bare = time.perf_counter() - started
        with Store(journaled_dir) as store:
            store.start_run("bench")
            started = time.perf_counter()
            for i in range(args.n):
                write_caption(journaled_dir / f"{i:04d}.txt", CAPTION.replace("full body", "cowboy shot"), store,
                              "bench")
            journaled = time.perf_counter() - started
    print(f"{args.n} captions, {args.repeat} rounds (seconds, the command start to exit)")
    print("| round | apply --dry-run | apply | ratio | undo | ratio |")
    print("|---|---|---|---|---|---|")
    for number, (dry, real, undo) in enumerate(rows, start=1):
        print(f"| {number} | {dry:.2f} | {real:.2f} | {real / dry:.2f} | {undo:.2f} | {undo / dry:.2f} |")
    print(f"writes alone: {args.n} atomic_write {bare:.3f} s ({bare / args.n * 1000:.2f} ms each), "
          f"{args.n} journaled write_caption {journaled:.3f} s ({journaled / args.n * 1000:.2f} ms each), "
          f"ratio {journaled / bare:.2f}")


if __name__ == "__main__":
    main()
