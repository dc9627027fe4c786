"""verify throughput against the loopback demo server (a separate process).

    python bench/verify_bench.py [--quick]

Each case runs in a fresh child process (so peak RSS and CPU are that
case's alone) over synthetic 256x384 images, at a fixed server latency:
achieved vs ideal throughput (ideal = concurrency / latency requests per
second), the wave floor (ceil(N / concurrency) x latency: with a fixed
latency no schedule beats it), client CPU per image, peak RSS. Then a
second run of the 200-image case, answered from the store. Finally the CPU
cost of preparing one realistic 832x1216 PNG (decode, resize to 1024, JPEG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POLICY = ROOT / "examples" / "keichan" / "policy.yaml"
CAPTION = ("masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\n"
           "A standing front view of a young girl with a bright smile. Her long hair intakes fall on both sides of "
           "her face below her blunt bangs, and her hair is gathered into a braided half-updo at the back, secured "
           "with a blue ribbon.\nblunt bangs, long sidelocks, half updo, braid, blue ribbon,\n"
           "smile, standing, facing viewer, {framing},\nwhite background, simple background\n")


def make_dataset(root: Path, n: int) -> None:
    """n distinct images (random 8x8 block patterns), captions, and the truth:
    every fifth caption says full body where the image is a cowboy shot."""
    rng = random.Random(n)
    folder = root / "images"
    folder.mkdir(parents=True)
    truth = {}
    for i in range(n):
        cells = Image.new("L", (8, 12))
        cells.putdata([rng.choice((30, 225)) for _ in range(96)])
        cells.convert("RGB").resize((256, 384), Image.Resampling.NEAREST).save(folder / f"{i:05d}.png")
        (folder / f"{i:05d}.txt").write_text(CAPTION.format(framing="full body"))
        framing = "cowboy shot" if i % 5 == 0 else "full body"
        truth[f"images/{i:05d}.png"] = dict(framing=framing, view="front", facing="forward", expression="smile")
    (root / "truth.json").write_text(json.dumps(truth))


def start_server(root: Path, latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "verifier.demo.server", "--truth", str(root / "truth.json"),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, proc.stdout.readline().strip()


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats") as fh:
        return json.load(fh)


def case(root: Path, url: str, concurrency: int) -> dict:
    """One verify run in this process; prints its figures as JSON."""
    from captions import load_policy
    from verifier.core.store import Store
    from verifier.core.verify import VerifyOptions, verify_dataset

    policy = load_policy(POLICY)
    options = VerifyOptions(model="demo", base_url=url, concurrency=concurrency, aspects=["framing"])
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with Store(root) as store:
        result = asyncio.run(verify_dataset(root, policy, options, store))
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = len(result.results)
    return {"n": n, "wall_s": wall, "cpu_s": cpu, "requests": result.requests, "max_in_flight": result.max_in_flight,
            "fix": result.count("fix"), "ok": result.count("ok"), "error": result.count("error"),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(root: Path, url: str, concurrency: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(root), url, str(concurrency)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prep_cost(repeat: int = 20) -> float:
    from verifier.core.images import prepare

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.png"
        Image.effect_mandelbrot((832, 1216), (-2, -1.5, 1, 1.5), 80).convert("RGB").save(path)
        prepare(path)
        t0 = time.process_time()
        for _ in range(repeat):
            prepare(path, 1024, "jpeg")
        return (time.process_time() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the bench itself)")
    ap.add_argument("--child", nargs=3, metavar=("ROOT", "URL", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(case(Path(args.child[0]), args.child[1], int(args.child[2]))))
        return
    latency = 2.0
    cases = [(6, 60), (32, 200), (128, 1280)] if not args.quick else [(6, 12), (32, 64)]
    print(f"verify bench: loopback demo server, latency {latency:g} s, 256x384 images, aspects=framing")
    print(f"{'conc':>5} {'images':>6} {'wall s':>7} {'ideal s':>7} {'floor s':>7} {'achieved/ideal':>14} "
          f"{'vs floor':>8} {'cpu ms/img':>10} {'max in flight':>13} {'rss MiB':>7}")
    for concurrency, n in cases:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_dataset(root, n)
            server, url = start_server(root, latency)
            try:
                r = child(root, url, concurrency)
                ideal = n * latency / concurrency
                floor = math.ceil(n / concurrency) * latency
                print(f"{concurrency:>5} {n:>6} {r['wall_s']:>7.2f} {ideal:>7.2f} {floor:>7.2f} "
                      f"{ideal / r['wall_s']:>14.1%} {floor / r['wall_s']:>8.1%} {1000 * r['cpu_s'] / n:>10.2f} "
                      f"{r['max_in_flight']:>13} {r['peak_rss_mib']:>7.0f}", flush=True)
                if concurrency == 32:
                    seen = server_stats(url)["requests"]
                    again = child(root, url, concurrency)
                    extra = server_stats(url)["requests"] - seen
                    print(f"      second run of the {n}: {again['wall_s']:.2f} s, {again['requests']} requests "
                          f"(server saw {extra}), {again['fix']} fix / {again['ok']} ok from the store", flush=True)
            finally:
                server.terminate()
                server.wait()
    big = 5000 if not args.quick else 500
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root, big)
        server, url = start_server(root, 0.1)
        try:
            r = child(root, url, 128)
        finally:
            server.terminate()
            server.wait()
    print(f"{big} images at concurrency 128, latency 0.1 s: {r['wall_s']:.1f} s, {1000 * r['cpu_s'] / big:.2f} ms CPU "
          f"per image, peak RSS {r['peak_rss_mib']:.0f} MiB, max in flight {r['max_in_flight']}, "
          f"{r['fix']} fix / {r['ok']} ok / {r['error']} error")
    print(f"prepare one 832x1216 PNG -> 1024 px JPEG: {1000 * prep_cost():.1f} ms CPU")


if __name__ == "__main__":
    main()
