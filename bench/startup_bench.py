"""`capcheck --help` and a command's help, start to exit, against the floor measured in the same run.

    python bench/startup_bench.py [--repeat 7]

Each figure is the best of --repeat runs of a fresh process (the machine is
shared: the least disturbed run). The baselines, timed the same way:

- `python -c pass`: the interpreter alone;
- a one-command typer app printing its `--help`: what any typer CLI with
  rich help pays (typer, rich, typer.rich_utils, which imports rich's
  markdown and traceback renderers whatever the markup mode) — the floor
  capcheck's help cannot go under while typer renders it.

Child processes write bytecode (PYTHONDONTWRITEBYTECODE is dropped for
them, and one untimed run warms the cache), as an installed capcheck has it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

CAPCHECK = "import sys; from verifier.cli.main import main; sys.argv[0] = 'capcheck'; main()"
TYPER_APP = """
import typer
app = typer.Typer(add_completion=False)
@app.command()
def lint(dataset: str, tags: str = None) -> None:
    "Check every caption."
app()
"""
CASES = [
    ("python -c pass", ["-c", "pass"]),
    ("one-command typer app --help", ["-c", TYPER_APP, "--help"]),
    ("capcheck --help", ["-c", CAPCHECK, "--help"]),
    ("capcheck verify --help", ["-c", CAPCHECK, "verify", "--help"]),
    ("capcheck lint --help", ["-c", CAPCHECK, "lint", "--help"]),
    ("capcheck train --help", ["-c", CAPCHECK, "train", "--help"]),
]


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:2])}: exit {proc.returncode}: {proc.stderr.decode()[-400:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "80"
    best: dict[str, float] = {}
    for round_ in range(args.repeat + 1):
        for name, argv in CASES:
            took = timed(argv, env)
            if round_:  # the first round warms the bytecode cache and is not counted
                best[name] = min(best.get(name, took), took)
    floor, bare = best["one-command typer app --help"], best["python -c pass"]
    print(f"best of {args.repeat} fresh processes each; load average {os.getloadavg()[0]:.2f}")
    for name, _argv in CASES:
        t = best[name]
        ratio = f"  {t / floor:.2f}x the typer app, +{(t - floor) * 1e3:.0f} ms" if name.startswith("capcheck") else ""
        print(f"{name:30s} {t:.3f} s{ratio}")
    print(f"(the interpreter alone: {bare:.3f} s; the typer app over it: {floor - bare:.3f} s)")


if __name__ == "__main__":
    main()
