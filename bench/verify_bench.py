"""verify throughput against the limit: a bare client, in the same run, on the same server.

    python bench/verify_bench.py [--quick] [--cases 32:256,128:512] [--big] [--no-library]

The limit is concrete: for each concurrency, the same requests (the bytes
capcheck sends, built beforehand) go to the same loopback demo server (a
separate process, fixed latency) from a bare `httpx` client (httpx2, the
transport the openai SDK uses) with the same concurrency and nothing else:
no images to read, no SDK, no store. Then capcheck verifies the same
832x1216 PNG dataset from scratch. Printed: both wall times, capcheck's
throughput as a ratio of the bare client's, and client CPU per image
(capcheck: decode, resize, encode, request, parse, store; bare: request
and parse), the cores capcheck's CPU per image needs to keep up with
the bare client and the cores it got (when it got fewer, it was
CPU-bound, not waiting). Each client runs in its own child process, so its CPU and RSS
are its own. Then a second capcheck run answered from the store, and the
CPU cost of preparing one image. `--big`: 5,000 images at concurrency 128.

`capcheck verify` as a user runs it is timed too, start to exit, in its
own process on a fresh copy of the same images (start-up, hashing,
preparation, requests, store, the reports with their thumbnails): "cmd s",
its ratio to the bare client, its CPU per image and cores used (from the
child's own rusage), its most requests in flight (as it prints them) and
its peak RSS ("cmd rss MiB"; "workers MiB": the preparing workers' peak
RSS summed, pages they share with the forkserver counted in each). CPU
always includes the workers' (sampled from /proc). Under the row, the
command's cores while its workers were preparing (from the sample before
their first CPU to the one with their last: the CPU-bound phase, without
the start-up or the wait for the last answers) beside the loopback
server's in the same span: together they say whether a core stood idle.
Last, where one image's CPU goes, stage by stage, each
measured alone on one thread (hash, decode, resize, encode, thumbnail,
request building, response parsing, store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POLICY = ROOT / "examples" / "keichan" / "policy.yaml"
ASPECTS = ["framing"]
SIZE = (832, 1216)
CAPTION = ("masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\n"
           "A standing front view of a young girl with a bright smile. Her long hair intakes fall on both sides of "
           "her face below her blunt bangs, and her hair is gathered into a braided half-updo at the back, secured "
           "with a blue ribbon.\nblunt bangs, long sidelocks, half updo, braid, blue ribbon,\n"
           "smile, standing, facing viewer, {framing},\nwhite background, simple background\n")


def make_dataset(root: Path, n: int, size: tuple[int, int] = SIZE) -> None:
    """n distinct images (random 8x12 block patterns under a blurred noise texture, so the PNG
    has real content to decode), captions, and the truth: every fifth is really a cowboy shot."""
    from verifier.demo.blocks import every_fifth_cowboy, make_blocks

    make_blocks(root, n, size=size, caption=CAPTION, textured=True, digits=5, compress_level=1,
                seen=lambda i: {**every_fifth_cowboy(i), "view": "front", "facing": "forward", "expression": "smile"})


def subset(master: Path, dest: Path, n: int) -> Path:
    (dest / "images").mkdir(parents=True)
    truth = json.loads((master / "truth.json").read_text())
    keep = {}
    for i in range(n):
        for ext in ("png", "txt"):
            shutil.copy(master / "images" / f"{i:05d}.{ext}", dest / "images" / f"{i:05d}.{ext}")
        keep[f"images/{i:05d}.png"] = truth[f"images/{i:05d}.png"]
    (dest / "truth.json").write_text(json.dumps(keep))
    return dest


def start_server(root: Path, latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "verifier.demo.server", "--truth", str(root / "truth.json"),
                             "--latency", str(latency)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    return proc, proc.stdout.readline().strip()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats") as fh:
        return json.load(fh)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def capcheck_case(root: Path, url: str, concurrency: int) -> dict:
    """One capcheck verify run in this process."""
    from captions import load_policy
    from verifier.core.store import Store
    from verifier.core.verify import VerifyOptions, verify_dataset

    policy = load_policy(POLICY)
    options = VerifyOptions(model="demo", base_url=url, concurrency=concurrency, aspects=ASPECTS)
    cpu0, t0 = _cpu(), time.perf_counter()
    with Store(root) as store:
        result = asyncio.run(verify_dataset(root, policy, options, store))
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    return {"n": len(result.results), "wall_s": wall, "cpu_s": cpu, "requests": result.requests,
            "max_in_flight": result.max_in_flight, "fix": result.count("fix"), "ok": result.count("ok"),
            "error": result.count("error"), "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bare_case(root: Path, url: str, concurrency: int) -> dict:
    """The limit: the same request bodies, sent by httpx with the same concurrency, answers parsed, nothing else."""
    import httpx2

    from captions import load_policy
    from verifier.core.backends import Request
    from verifier.core.backends.openai_api import chat_body
    from verifier.core.images import prepare
    from verifier.core.prompting import OBSERVE, build_prompt

    spec = build_prompt(load_policy(POLICY), OBSERVE, ASPECTS)
    bodies = [json.dumps(chat_body("demo", Request(spec.render(png.with_suffix(".txt").read_text()), prepare(png),
                                                   spec.schema))).encode()
              for png in sorted((root / "images").glob("*.png"))]  # built before the clock starts

    async def go() -> int:
        limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx2.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one(body: bytes) -> bool:
                async with gate:
                    response = await client.post("/chat/completions", content=body,
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(response.content)["choices"][0]["message"]["content"]
                return "framing" in json.loads(answer)

            return sum(await asyncio.gather(*(one(b) for b in bodies)))

    cpu0, t0 = _cpu(), time.perf_counter()
    answered = asyncio.run(go())
    return {"n": len(bodies), "answered": answered, "wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - cpu0}


def _session_usage(sid: int, seen: dict[int, tuple[float, float]]) -> None:
    """CPU seconds and peak RSS (MiB) of each process in session `sid` so far (Linux /proc): the
    preparing workers are the forkserver's children, so the run's own rusage does not hold them."""
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid or int(stat.parent.name) == sid:
                continue
            status = (stat.parent / "status").read_text()
        except (OSError, ValueError):
            continue
        hwm = next((int(x.split()[1]) / 1024 for x in status.splitlines() if x.startswith("VmHWM:")), 0.0)
        cpu = (int(fields[11]) + int(fields[12])) / tick
        old = seen.get(int(stat.parent.name), (0.0, 0.0))
        seen[int(stat.parent.name)] = (max(old[0], cpu), max(old[1], hwm))


@dataclass
class Sampled:
    """One child process's run, as `run_sampled` measured it."""
    out: str
    err: str
    wall_s: float
    own_cpu_s: float  # from wait4: the run's own process
    workers_cpu_s: float  # the preparing workers', from /proc samples
    rss_mib: float
    workers_rss_mib: float
    # every 0.2 s: (seconds since the start, CPU s so far of the session, of its workers, of the watched process)
    timeline: list[tuple[float, float, float, float]]

    def busy(self) -> tuple[float, float, float]:
        """(seconds, the session's cores, the watched process's cores) from the sample before the
        preparing workers' first CPU to the sample with their last: the run's CPU-bound phase, without
        the start-up before it or the wait for the last answers after it."""
        grew = [i for i in range(1, len(self.timeline)) if self.timeline[i][2] > self.timeline[i - 1][2]]
        if not grew:
            return 0.0, float("nan"), float("nan")
        (t0, c0, _, w0), (t1, c1, _, w1) = self.timeline[grew[0] - 1], self.timeline[grew[-1]]
        return t1 - t0, (c1 - c0) / (t1 - t0), (w1 - w0) / (t1 - t0)


def run_sampled(argv: list[str], watch: int | None = None) -> Sampled:
    """Run `argv` in its own session and measure it. The run's own CPU and RSS come from wait4; the
    preparing workers' (the forkserver's children, not the run's) from /proc samples every 0.2 s, which
    also make the timeline: the session's CPU, its workers', and that of `watch` (the loopback server)."""
    workers: dict[int, tuple[float, float]] = {}
    timeline: list[tuple[float, float, float, float]] = []
    with tempfile.TemporaryFile("w+") as out_fh, tempfile.TemporaryFile("w+") as err_fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out_fh, stderr=err_fh, text=True, cwd=ROOT, start_new_session=True)
        while os.path.exists("/proc/self/stat"):
            pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            _session_usage(proc.pid, workers)
            own = _live_cpu(proc.pid)
            if own is not None:
                in_workers = sum(c for c, _ in workers.values())
                watched = (_live_cpu(watch) or 0.0) if watch else 0.0
                timeline.append((time.perf_counter() - t0, own + in_workers, in_workers, watched))
            time.sleep(0.2)
        else:
            _, _, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = 0  # reaped here; keeps Popen from waiting again
        out_fh.seek(0)
        err_fh.seek(0)
        out, err = out_fh.read(), err_fh.read()
    return Sampled(out, err, wall, usage.ru_utime + usage.ru_stime, sum(c for c, _ in workers.values()),
                   usage.ru_maxrss / 1024, sum(r for _, r in workers.values()), timeline)


def _live_cpu(pid: int) -> float | None:
    try:
        return proc_cpu(pid)
    except (OSError, ValueError, IndexError):
        return None


def command_case(root: Path, url: str, concurrency: int, server: int) -> dict:
    """`capcheck verify` in its own process, start to exit, as a user runs it (`server`: its pid, watched)."""
    script = Path(sys.executable).with_name("capcheck")  # the installed command; else the same by module
    command = [str(script)] if script.exists() else [sys.executable, "-m", "verifier.cli"]
    argv = [*command, "verify", str(root), "--policy", str(POLICY), "--model", "demo", "--base-url", url,
            "--concurrency", str(concurrency), "--aspects", ",".join(ASPECTS)]
    run = run_sampled(argv, watch=server)
    found = re.search(r"at most (\d+) in flight", run.out)
    if "Traceback" in run.out + run.err or not found:
        raise SystemExit(f"capcheck verify failed:\n{run.out}\n{run.err}")
    busy_s, busy_cores, busy_server = run.busy()
    return {"wall_s": run.wall_s, "cpu_s": run.own_cpu_s + run.workers_cpu_s, "max_in_flight": int(found.group(1)),
            "peak_rss_mib": run.rss_mib, "workers_rss_mib": run.workers_rss_mib, "busy_s": busy_s,
            "busy_cores": busy_cores, "busy_server_cores": busy_server}


def stages(repeat: int = 10) -> list[tuple[str, float]]:
    """(stage, ms of CPU) for one 832x1216 PNG, each stage alone on one thread."""
    from captions import load_policy
    from captions.caption import parse
    from captions.facts import facts_from_caption
    from verifier.core import images
    from verifier.core.answers import interpret
    from verifier.core.backends import Reply, Request
    from verifier.core.backends.openai_api import chat_body
    from verifier.core.prompting import OBSERVE, build_prompt
    from verifier.core.store import Store

    def cpu_ms(fn) -> float:
        fn()
        t = time.process_time()
        for _ in range(repeat):
            fn()
        return 1000 * (time.process_time() - t) / repeat

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(tmp), 1)
        path = Path(tmp) / "images" / "00000.png"
        out.append(("hash (sha256 of the file)", cpu_ms(lambda: images.sha256_file(path))))
        if hasattr(images, "open_seen"):
            decoded = images.open_seen(path, 1024)
            small = images.shrink(decoded, 1024)
            out += [("decode", cpu_ms(lambda: images.open_seen(path, 1024))),
                    ("resize to 1024", cpu_ms(lambda: images.shrink(decoded, 1024))),
                    ("encode JPEG", cpu_ms(lambda: images.encode(small, "jpeg"))),
                    ("thumbnail (from the same decode)",
                     cpu_ms(lambda: images.encode(images.thumbnail(small, 320)) if hasattr(images, "thumbnail")
                            else images.encode(images.shrink(small, 320, images.Image.Resampling.BOX))))]
        else:  # before issue 19: one function, and the report's thumbnail a second decode
            out += [("prepare (decode, resize, encode)", cpu_ms(lambda: images.prepare(path, 1024, "jpeg"))),
                    ("thumbnail (a second decode)", cpu_ms(lambda: images.prepare(path, 320, "jpeg")))]
        jpeg = Path(tmp) / "00000.jpg"
        Image.open(path).save(jpeg, quality=92)
        thumb = {"thumb_side": 320} if hasattr(images, "open_seen") else {}
        out.append(("a JPEG of that size, all of it (+ thumbnail)",
                    cpu_ms(lambda: images.prepare(jpeg, 1024, "jpeg", **thumb))))
        policy = load_policy(POLICY)
        spec = build_prompt(policy, OBSERVE, ASPECTS)
        prepared = images.prepare(path)
        caption = CAPTION.format(framing="full body")
        body = lambda: json.dumps(chat_body("demo", Request(spec.render(caption), prepared, spec.schema)))  # noqa: E731
        out.append(("request building (body, base64, JSON)", cpu_ms(body)))
        claims = facts_from_caption(parse(caption), policy)
        answer = json.dumps({"framing": {"value": "cowboy shot", "borderline": False}, "note": None})
        completion = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": "demo", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}})

        def parse_reply():
            from verifier.core.backends.openai_api import reply_from_body

            reply = reply_from_body(json.loads(completion))
            return interpret(Reply(reply.content, None, "stop", 300, 20, raw=completion), spec, policy, claims)
        out.append(("response parsing (SDK model, verdict)", cpu_ms(parse_reply)))
        with Store(Path(tmp)) as store:
            store.start_run("verify", "{}")
            n = iter(range(10 ** 6))
            row = dict(image="images/00000.png", caption_sha="c", prompt_sha="p", backend="openai", model="demo",
                       protocol="observe", status="fix", fixes=[], observation={"framing": "cowboy shot"}, claims={},
                       reason=None, attempts=1, latency_s=2.0, raw=completion, prompt_tokens=300, completion_tokens=20)
            out.append(("store (one verdict, committed)", cpu_ms(lambda: store.put_verdict(image_sha=f"{next(n)}",
                                                                                           **row))))
    return out


def child(kind: str, root: Path, url: str, concurrency: int) -> dict:
    """One client in its own process; its CPU (measured around the run) plus its preparing workers'."""
    run = run_sampled([sys.executable, __file__, "--child", kind, str(root), url, str(concurrency)])
    if not run.out.strip():
        raise SystemExit(f"{kind} failed:\n{run.err}")
    result = json.loads(run.out.strip().splitlines()[-1])
    return {**result, "cpu_s": result["cpu_s"] + run.workers_cpu_s, "workers_rss_mib": run.workers_rss_mib}


def prep_cost(repeat: int = 20) -> float:
    from verifier.core.images import prepare

    with tempfile.TemporaryDirectory() as tmp:
        make_dataset(Path(tmp), 1)
        path = Path(tmp) / "images" / "00000.png"
        prepare(path)
        cpu0 = time.process_time()
        for _ in range(repeat):
            prepare(path, 1024, "jpeg")
        return (time.process_time() - cpu0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller runs (a smoke test of the bench itself)")
    ap.add_argument("--big", action="store_true", help="also 5,000 images at concurrency 128")
    ap.add_argument("--latency", type=float, default=2.0, help="the server's fixed latency, seconds")
    ap.add_argument("--size", default=f"{SIZE[0]}x{SIZE[1]}",
                    help="input PNG size, WxH (256x384: no resize, to see the client without the image work)")
    ap.add_argument("--cases", help="concurrency:images pairs (default 32:256,128:512; --quick: 32:64,128:128)")
    ap.add_argument("--no-library", action="store_true", help="skip the in-process library run: the command only")
    ap.add_argument("--child", nargs=4, metavar=("KIND", "ROOT", "URL", "CONCURRENCY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, root, url, concurrency = args.child
        run = capcheck_case if kind == "capcheck" else bare_case
        print(json.dumps(run(Path(root), url, int(concurrency))))
        return
    cases = [(32, 256), (128, 512)] if not args.quick else [(32, 64), (128, 128)]
    if args.cases:
        cases = [tuple(int(x) for x in pair.split(":")) for pair in args.cases.split(",")]
    size = tuple(int(x) for x in args.size.lower().split("x"))
    print(f"verify bench: loopback demo server (own process), latency {args.latency:g} s, {size[0]}x{size[1]} PNG "
          f"inputs, aspects=framing; bare = httpx2, same bodies, same concurrency")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    print(f"{'conc':>5} {'images':>6} {'bare s':>7} {'capcheck s':>10} {'ratio':>6} {'capcheck cpu ms/img':>19} "
          f"{'bare cpu ms/img':>15} {'cores needed':>12} {'cores used':>10} {'max in flight':>13} {'rss MiB':>7}"
          f" {'cmd s':>6} {'cmd ratio':>9} {'cmd cpu ms/img':>14} {'cmd cores used':>14} {'cmd in flight':>13}"
          f" {'cmd rss MiB':>11} {'workers MiB':>11} {'server cores':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        master = Path(tmp) / "master"
        make_dataset(master, max(n for _, n in cases), size)
        for concurrency, n in cases:
            root = subset(master, Path(tmp) / f"c{concurrency}", n)
            server, url = start_server(root, args.latency)
            try:
                bare = child("bare", root, url, concurrency)
                fresh = subset(master, Path(tmp) / f"cmd{concurrency}", n)  # no store, no thumbnails yet
                server_cpu = proc_cpu(server.pid)
                cmd = command_case(fresh, url, concurrency, server.pid)
                server_cores = (proc_cpu(server.pid) - server_cpu) / cmd["wall_s"]  # the loopback server's share
                if args.no_library:
                    r = {"wall_s": float("nan"), "cpu_s": float("nan"), "max_in_flight": 0, "peak_rss_mib": 0,
                         "error": 0}
                else:
                    r = child("capcheck", root, url, concurrency)
                assert bare["answered"] == n and r["error"] == 0, (bare, r)
                # cores needed: capcheck's CPU per image at the bare client's throughput; used: what it got
                needed = r["cpu_s"] / n * (n / bare["wall_s"])
                print(f"{concurrency:>5} {n:>6} {bare['wall_s']:>7.2f} {r['wall_s']:>10.2f} "
                      f"{bare['wall_s'] / r['wall_s']:>6.3f} {1000 * r['cpu_s'] / n:>19.1f} "
                      f"{1000 * bare['cpu_s'] / n:>15.1f} {needed:>12.2f} {r['cpu_s'] / r['wall_s']:>10.2f} "
                      f"{r['max_in_flight']:>13} {r['peak_rss_mib']:>7.0f} {cmd['wall_s']:>6.2f} "
                      f"{bare['wall_s'] / cmd['wall_s']:>9.3f} {1000 * cmd['cpu_s'] / n:>14.1f} "
                      f"{cmd['cpu_s'] / cmd['wall_s']:>14.2f} {cmd['max_in_flight']:>13} "
                      f"{cmd['peak_rss_mib']:>11.0f} {cmd['workers_rss_mib']:>11.0f} {server_cores:>12.2f}", flush=True)
                print(f"      cmd while its workers prepared ({cmd['busy_s']:.1f} s of the {cmd['wall_s']:.1f}): "
                      f"capcheck {cmd['busy_cores']:.2f} cores + loopback server {cmd['busy_server_cores']:.2f} = "
                      f"{cmd['busy_cores'] + cmd['busy_server_cores']:.2f} of the machine's {os.cpu_count()}",
                      flush=True)
                if concurrency == 32 and not args.no_library:
                    seen = server_stats(url)["requests"]
                    again = child("capcheck", root, url, concurrency)
                    extra = server_stats(url)["requests"] - seen
                    print(f"      second run of the {n}: {again['wall_s']:.2f} s, {again['requests']} requests "
                          f"(server saw {extra}), {again['fix']} fix / {again['ok']} ok from the store", flush=True)
            finally:
                server.terminate()
                server.wait()
    print(f"prepare one {SIZE[0]}x{SIZE[1]} PNG -> 1024 px JPEG: {1000 * prep_cost():.1f} ms CPU")
    try:
        from verifier.core import decoders
        fast = "pyspng" if decoders.available() else "Pillow (pyspng not installed)"
    except ImportError:
        fast = "Pillow"
    print(f"where one {SIZE[0]}x{SIZE[1]} PNG's CPU goes, each stage alone on one thread (PNG decoder: {fast}):")
    for name, ms in stages():
        print(f"  {name:<40} {ms:>6.1f} ms")
    if args.big:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_dataset(root, 5000, (256, 384))
            server, url = start_server(root, 0.1)
            try:
                r = child("capcheck", root, url, 128)
            finally:
                server.terminate()
                server.wait()
        print(f"5000 images (256x384) at concurrency 128, latency 0.1 s: {r['wall_s']:.1f} s, "
              f"{1000 * r['cpu_s'] / 5000:.2f} ms CPU per image, peak RSS {r['peak_rss_mib']:.0f} MiB, max in flight "
              f"{r['max_in_flight']}, {r['fix']} fix / {r['ok']} ok / {r['error']} error")


if __name__ == "__main__":
    main()
