#!/usr/bin/env python3
"""Re-run issue 17's first-day faults against the installed `capcheck` and print a Markdown table.

Each case builds a small dataset in its own temporary folder, runs the
`capcheck` command found on PATH as a subprocess (whatever code that imports:
set PYTHONPATH to the checkout under test), and prints one table row:

    case | exit code | message | traceback | data lost | notes

- exit code: the return code(s) of the command(s) the case is about;
- message: the first line of stderr that is not the "policy: ..." or
  "DEMO MODEL" notice every command prints, shortened (stdout's first line
  when stderr has nothing else);
- traceback: "y" when any of the case's commands printed "Traceback";
- data lost: "y" when a caption (or the store) was lost or changed when
  it should not have been, by the case's own rule (given in the notes).

A model, where one is needed, is the project's loopback demo server
(verifier.demo.server.DemoServer, started in this process, real HTTP), so
the requests the model got can be counted and looked at. Datasets come from
the tests' helpers (tests/kohya.py) and small generated images.

    PYTHONPATH=/path/to/checkout python scripts/first_day_faults.py [--only 3,7]

FAULTS_SEED (default 17) seeds case 7's kill times.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageStat  # noqa: E402

from verifier.demo.blocks import make_blocks  # noqa: E402
from verifier.demo.model import DemoModel  # noqa: E402
from verifier.demo.server import DemoServer, Faults  # noqa: E402

import kohya  # noqa: E402  (tests/kohya.py)

POLICY = ROOT / "examples" / "keichan" / "policy.yaml"
EXAMPLE = ROOT / "examples" / "keichan" / "dataset"
CAPCHECK = shutil.which("capcheck") or "capcheck"
ROWS: list[tuple[str, ...]] = []
CASES = []
CURRENT_TMP: list[str] = []  # the running case's temp folder, shown as TMP
ALL_OUTPUT: list[str] = []  # every command's output, for a traceback anywhere


# ---------------------------------------------------------------- helpers

def cap(*args, timeout=180, preexec_fn=None, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([CAPCHECK, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn, cwd=cwd)
    ALL_OUTPUT.append(proc.stdout + proc.stderr)
    return proc


def popen(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([CAPCHECK, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **kw)


def noise(line: str) -> bool:
    return line.startswith(("policy:", "DEMO MODEL")) or not line.strip()


def message(*procs) -> str:
    """The first telling stderr line of each command (stdout's when stderr says nothing)."""
    out = []
    for p in procs:
        err = [x for x in (p.stderr or "").splitlines() if not noise(x)]
        line = err[0] if err else next((x for x in (p.stdout or "").splitlines() if x.strip()), "")
        line = line.strip().replace(CURRENT_TMP[0], "TMP") if CURRENT_TMP else line.strip()
        out.append((line[:110] + "…") if len(line) > 110 else line)
    return " / ".join(out)


def naming(text: str, *words: str) -> str:
    """The lines of `text` that name any of `words`, shortened."""
    lines = [x.strip() for x in text.splitlines() if any(w in x for w in words)]
    if CURRENT_TMP:
        lines = [x.replace(CURRENT_TMP[0], "TMP") for x in lines]
    return " / ".join(x[:100] for x in lines[:4]) or "(no line names it)"


def tb(*procs) -> str:
    return "y" if any("Traceback" in (p.stdout or "") + (p.stderr or "") for p in procs) else "n"


def codes(*procs) -> str:
    return " / ".join(str(p.returncode) for p in procs)


def captions(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.txt"))
            if "_review" not in p.parts and ".capcheck" not in p.parts}


def kohya_set(tmp: Path, n: int = 12) -> Path:
    root = tmp / "kanachan"
    kohya.make(root, n)
    return root


def kohya_server(root: Path, faults: Faults | None = None) -> DemoServer:
    return recording(DemoServer(DemoModel.load(kohya.truth_file(root), root), faults))


def recording(server: DemoServer) -> DemoServer:
    """Keep every completion request the server gets (server.seen)."""
    inner = server._server
    server.seen, server.keys = [], []  # each request, and the image the demo model took it for
    take = inner.take

    def keep(request):
        known, fault = take(request)
        server.seen.append(request)
        server.keys.append(known.key if known else "?")
        return known, fault

    inner.take = keep
    return server


def empty_server(root: Path, faults: Faults | None = None) -> DemoServer:
    truth = root.parent / "empty-truth.json"
    truth.write_text("{}")
    return recording(DemoServer(DemoModel.load(truth, root), faults))




def many_server(root: Path, faults: Faults | None = None) -> DemoServer:
    from captions.policy import load_policy

    return recording(DemoServer(DemoModel.load(root / "truth.json", root, load_policy(POLICY)), faults))


def verify_many(root: Path, server: DemoServer, *extra) -> subprocess.CompletedProcess:
    return cap("verify", root, "--policy", POLICY, "--model", "demo-vision", "--aspects", "framing",
               "--base-url", server.url, *extra)


def image_of(request: dict) -> Image.Image | None:
    for message_ in request.get("messages", []):
        content = message_.get("content")
        for part in content if isinstance(content, list) else []:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    return None


def asked_tags(request: dict) -> list[str]:
    schema = ((request.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    return list(((schema.get("properties") or {}).get("tags") or {}).get("properties") or {})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def case(number: int, title: str):
    def register(fn):
        CASES.append((number, title, fn))
        return fn
    return register


def row(number, title, code="", msg="", trace="n", lost="n", notes=""):
    ROWS.append((f"{number}. {title}", code, msg, trace, lost, notes))


# ---------------------------------------------------------------- the cases

@case(1, "kohya folder, no init (generic policy): trigger asked / removed?")
def c1(tmp):
    root = kohya_set(tmp)
    before = captions(root)
    with kohya_server(root) as srv:
        v = cap("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url", srv.url)
    a = cap("apply", root)
    asked = sum("kanachan" in asked_tags(r) for r in srv.seen)
    report = [json.loads(x) for x in (root / ".capcheck/reports/latest.jsonl").read_text().splitlines()]
    checked = sum("kanachan" in ((x.get("tags") or {}).get("checked") or []) for x in report)
    after = captions(root)
    removed = [p for p in before if b"kanachan" in before[p] and b"kanachan" not in after[p]]
    changed = sum(before[p] != after[p] for p in before)
    row(1, "kohya, no init: trigger", codes(v, a), message(v, a), tb(v, a), "y" if removed else "n",
        f"trigger asked in {asked} of {len(srv.seen)} requests, in report's checked {checked}; "
        f"removed from {len(removed)} captions; apply changed {changed}")


@case(2, "16-bit grayscale PNG (I;16): what reaches the model")
def c2(tmp):
    root = tmp / "data"
    root.mkdir()
    img = Image.new("I;16", (256, 256))
    img.putdata([(x * 256) for y in range(256) for x in range(256)])  # a 0..65280 horizontal ramp
    img.save(root / "gray16.png")
    (root / "gray16.txt").write_text("1girl, solo, full body\n")
    mode = Image.open(root / "gray16.png").mode
    with empty_server(root) as srv:
        v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
    sent = [image_of(r) for r in srv.seen]
    sent = [s for s in sent if s is not None]
    if sent:
        stat = ImageStat.Stat(sent[0].convert("L"))
        lo, hi = sent[0].convert("L").getextrema()
        what = f"sent {sent[0].size} {sent[0].format}: mean {stat.mean[0]:.0f}, min {lo}, max {hi} (ramp: mean ~128)"
        white = stat.mean[0] > 240
    else:
        what, white = "no image sent", False
    thumbs = list((root / ".capcheck").rglob("*.html"))
    row(2, "16-bit grayscale PNG", codes(v), message(v), tb(v), "n",
        f"file mode {mode}; {what}; {'WHITE' if white else 'not white'}; report pages {len(thumbs)}")


@case(3, "animated GIF / AVIF in the dataset: named or silent?")
def c3(tmp):
    root = tmp / "data"
    root.mkdir()
    frames = [Image.new("RGB", (96, 96), c) for c in ("red", "blue", "green")]
    frames[0].save(root / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    (root / "anim.txt").write_text("1girl, solo, full body\n")
    Image.effect_mandelbrot((96, 96), (-2, -1.5, 1, 1.5), 30).convert("RGB").save(root / "pic.avif")
    (root / "pic.txt").write_text("1girl, solo, cowboy shot\n")
    Image.effect_mandelbrot((96, 96), (-1, -1.5, 1, 1.5), 30).convert("RGB").save(root / "plain.png")
    (root / "plain.txt").write_text("1girl, solo, cowboy shot\n")
    with empty_server(root) as srv:
        v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
    lnt = cap("lint", root)
    out = v.stdout + v.stderr
    rep = root / ".capcheck/reports/latest.jsonl"
    images = [json.loads(x)["image"] for x in rep.read_text().splitlines()] if rep.exists() else []
    gif_named = "anim.gif" in out
    avif_named = "pic.avif" in out
    row(3, "animated GIF / AVIF", codes(v, lnt), message(v, lnt), tb(v, lnt), "n",
        f"verify names gif: {'y' if gif_named else 'n'}, avif: {'y' if avif_named else 'n'}; "
        f"lint names gif: {'y' if 'anim.gif' in lnt.stdout + lnt.stderr else 'n'}, "
        f"avif: {'y' if 'pic.avif' in lnt.stdout + lnt.stderr else 'n'}; "
        f"{len(srv.seen)} requests; report images {images}; verify says: "
        + naming(out, "anim.gif", "pic.avif", ".avif"))


@case(4, "decompression-bomb PNG (20000x20000): one line and the rest stored?")
def c4(tmp):
    root = kohya_set(tmp)
    Image.new("1", (20000, 20000)).save(root / "10_kanachan" / "bomb.png")  # 400 Mpx, a few hundred KB
    (root / "10_kanachan" / "bomb.txt").write_text("kanachan, 1girl, solo, full body\n")
    with kohya_server(root) as srv:
        v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
    rep = root / ".capcheck/reports/latest.jsonl"
    lines = [json.loads(x) for x in rep.read_text().splitlines()] if rep.exists() else []
    others = sum(1 for x in lines if "bomb" not in x["image"] and x["status"] in ("ok", "fix"))
    bomb = [x for x in lines if "bomb" in x["image"]]
    mentions = [x for x in (v.stdout + v.stderr).splitlines() if "bomb" in x]
    row(4, "decompression bomb PNG", codes(v), message(v), tb(v), "n",
        f"{len(mentions)} line(s) name it; the 12 others stored ok/fix: {others}; "
        f"bomb in report: {bomb[0]['status'] + ': ' + (bomb[0].get('reason') or '')[:60] if bomb else 'no'}; "
        f"says: {naming(v.stdout + v.stderr, 'bomb')}")


@case(5, "image symlink to itself / dangling / outside the dataset")
def c5(tmp):
    root = kohya_set(tmp)
    d = root / "10_kanachan"
    os.symlink("loop.png", d / "loop.png")
    os.symlink("missing.png", d / "dangling.png")
    outside = tmp / "outside"
    outside.mkdir()
    Image.effect_mandelbrot((96, 96), (-2, -1, 1, 1.5), 25).convert("RGB").save(outside / "elsewhere.png")
    os.symlink(outside / "elsewhere.png", d / "outside.png")
    for stem in ("loop", "dangling", "outside"):
        (d / f"{stem}.txt").write_text("kanachan, 1girl, solo, full body\n")
    with kohya_server(root) as srv:
        v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
    lnt = cap("lint", root)
    out = v.stdout + v.stderr
    rep = root / ".capcheck/reports/latest.jsonl"
    lines = {json.loads(x)["image"]: json.loads(x) for x in rep.read_text().splitlines()} if rep.exists() else {}
    seen = {s: ("named" if f"{s}.png" in out else "silent") + (f", report {lines[k]['status']}" if (
        k := f"10_kanachan/{s}.png") in lines else ", not in report") for s in ("loop", "dangling", "outside")}
    row(5, "symlinks: self / dangling / outside", codes(v, lnt), message(v, lnt), tb(v, lnt), "n",
        f"{seen}; {len(srv.seen)} requests (12 regular images); verify says: "
        f"{naming(out, 'loop.png', 'dangling.png', 'outside.png')}; lint says: "
        f"{naming(lnt.stdout + lnt.stderr, 'loop.', 'dangling.', 'outside.')}")


@case(6, "0-byte capcheck.db; junk capcheck.db")
def c6(tmp):
    results = []
    for kind, data in (("0-byte", b""), ("junk", b"\x00junk, not a database\n" * 200)):
        root = kohya_set(tmp / kind)
        db = root / ".capcheck" / "capcheck.db"
        db.parent.mkdir(parents=True)
        db.write_bytes(data)
        with kohya_server(root) as srv:
            v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
        u = cap("undo", root)
        same = db.read_bytes() == data
        results.append((kind, v, u, same, len(srv.seen)))
    procs = [p for r in results for p in r[1:3]]
    row(6, "0-byte / junk capcheck.db", codes(*procs), message(results[0][1], results[1][1]), tb(*procs),
        "n" if all(r[3] for r in results) else "y",
        "; ".join(f"{k}: verify {v.returncode} undo {u.returncode}, db byte-identical {'y' if s else 'n'}, "
                  f"{n} requests" for k, v, u, s, n in results))


def verified_many(tmp: Path, n: int = 200) -> Path:
    master = tmp / "master"
    make_blocks(master, n)
    with many_server(master) as srv:
        v = verify_many(master, srv)
    assert v.returncode == 0, v.stdout + v.stderr
    return master


@case(7, "kill -9 during apply (200 captions, 10 tries): undo works? .tmp left?")
def c7(tmp):
    master = verified_many(tmp)
    original = captions(master)
    rng = random.Random(int(os.environ.get("FAULTS_SEED", "17")))
    # how long one apply takes, to aim the kills inside it
    probe = tmp / "probe"
    shutil.copytree(master, probe)
    t0 = time.monotonic()
    full = cap("apply", probe)
    took = time.monotonic() - t0
    fixed = captions(probe)
    changed = sum(original[p] != fixed[p] for p in original)
    bad_undo, torn, codes_, undo_msgs, states = 0, 0, [], [], []
    tmp_after_kill, tmp_after_undo = [], []

    def tmp_files(root):
        return [x.relative_to(root).as_posix() for x in root.rglob("*") if ".tmp" in x.name]

    for i in range(10):
        root = tmp / f"try{i}"
        shutil.copytree(master, root)
        p = popen("apply", root)
        time.sleep(rng.uniform(0.35, max(0.4, took)))
        p.send_signal(signal.SIGKILL)
        p.communicate()
        codes_.append(p.returncode)
        mid = captions(root)
        torn += sum(mid[k] not in (original[k], fixed[k]) for k in original)
        states.append(sum(mid[k] != original[k] for k in original))
        tmp_after_kill += tmp_files(root)
        u = cap("undo", root)
        after = captions(root)
        if after != original:
            bad_undo += 1
            undo_msgs.append(message(u))
        tmp_after_undo += tmp_files(root)
    row(7, "kill -9 during apply ×10", f"apply {sorted(set(codes_))}", undo_msgs[0] if undo_msgs else
        "(undo restored every caption each time)", tb(full), "y" if bad_undo or torn else "n",
        f"one apply: {took:.1f}s, changes {changed}; captions changed when killed, per try: {states}; undo left a "
        f"caption wrong in {bad_undo}/10; torn captions {torn}; .tmp after kill: {tmp_after_kill or 'none'}; "
        f".tmp after undo: {tmp_after_undo or 'none'}")


@case(8, "two apply runs at once")
def c8(tmp):
    master = verified_many(tmp, 60)
    original = captions(master)
    probe = tmp / "probe"
    shutil.copytree(master, probe)
    cap("apply", probe)
    fixed = captions(probe)
    root = tmp / "both"
    shutil.copytree(master, root)
    a, b = popen("apply", root), popen("apply", root)
    outs = [p.communicate() for p in (a, b)]
    procs = [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip((a, b), outs, strict=True)]
    after = captions(root)
    wrong = sum(after[k] != fixed[k] for k in fixed)
    u = cap("undo", root)
    restored = captions(root) == original
    u2 = cap("undo", root)
    restored2 = captions(root) == original
    row(8, "two apply at once", codes(*procs), message(*procs), tb(*procs, u, u2),
        "y" if wrong or not (restored or restored2) else "n",
        f"captions not as one apply leaves them: {wrong}; first undo restores all: {'y' if restored else 'n'} "
        f"({message(u)}); second undo: rc {u2.returncode} ({message(u2)}); apply summaries: "
        + " / ".join(naming(p.stdout, "capcheck apply:") for p in procs))


@case(9, "two verify runs at once: requests paid twice?")
def c9(tmp):
    root = tmp / "data"
    make_blocks(root, 20)
    with many_server(root, Faults(latency=0.3)) as srv:
        a = popen("verify", root, "--policy", POLICY, "--model", "demo-vision", "--aspects", "framing",
                  "--base-url", srv.url)
        b = popen("verify", root, "--policy", POLICY, "--model", "demo-vision", "--aspects", "framing",
                  "--base-url", srv.url)
        outs = [p.communicate(timeout=180) for p in (a, b)]
        n = srv.stats.snapshot()["requests"]
    procs = [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip((a, b), outs, strict=True)]
    row(9, "two verify at once", codes(*procs), message(*procs), tb(*procs), "n",
        f"20 images, server got {n} requests ({'paid twice' if n > 20 else 'not twice'})")


def limited(nbytes: int):
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, nbytes))
    return set_limit


@case(10, "full disk (RLIMIT_FSIZE) for build, verify, apply")
def c10(tmp):
    notes, procs, lost = [], [], False
    # build: the example's sidecars, captions deleted; the store exists (a dry run made it)
    root = tmp / "build"
    shutil.copytree(EXAMPLE, root)
    for t in root.rglob("*.txt"):
        t.unlink()
    ref = tmp / "build-ref"
    shutil.copytree(root, ref)
    cap("build", ref, "--policy", POLICY)
    built = captions(ref)
    cap("undo", root, "--dry-run")  # creates the store when it does not exist
    db = root / ".capcheck" / "capcheck.db"
    limit = max(db.stat().st_size if db.exists() else 0, 8192)
    b = cap("build", root, "--policy", POLICY, preexec_fn=limited(limit))
    procs.append(b)
    got = captions(root)
    partial = [k for k in got if got[k] != built.get(k)]
    b2 = cap("build", root, "--policy", POLICY)
    recovered = captions(root) == built
    lost |= bool(partial) and not recovered
    notes.append(f"build (limit {limit} B): {len(got)} of {len(built)} captions written, {len(partial)} torn; "
                 f"a rebuild without limit: rc {b2.returncode}, all right {'y' if recovered else 'n'}")
    # verify: a kohya set that has a store; the limit is the store's size
    root = kohya_set(tmp / "verify")
    before = captions(root)
    cap("undo", root, "--dry-run")
    db = root / ".capcheck" / "capcheck.db"
    limit = max(db.stat().st_size if db.exists() else 0, 8192)
    with kohya_server(root) as srv:
        v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url,
                preexec_fn=limited(limit))
        paid = len(srv.seen)
        v2 = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
    procs.append(v)
    lost |= captions(root) != before or v2.returncode not in (0,)
    notes.append(f"verify (limit {limit} B): {paid} requests, the rerun {len(srv.seen) - paid}; "
                 f"rerun without limit rc {v2.returncode}")
    # apply: a verified kohya set (WAL checkpointed), under a few limits
    master = kohya_set(tmp / "apply")
    before = captions(master)
    with kohya_server(master) as srv:
        cap("verify", master, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url", srv.url)
    for extra in ("-wal", "-shm"):
        (master / ".capcheck" / f"capcheck.db{extra}").unlink(missing_ok=True)
    undos = []
    for limit in (4096, 8192, 16384, (master / ".capcheck" / "capcheck.db").stat().st_size):
        root = tmp / f"apply-{limit}"
        shutil.copytree(master, root)
        a = cap("apply", root, preexec_fn=limited(limit))
        procs.append(a)
        mid = captions(root)
        changed = sum(mid[k] != before[k] for k in before)
        u = cap("undo", root)
        undos.append(u)
        back = captions(root) == before
        lost |= changed > 0 and not back
        notes.append(f"apply (limit {limit} B): rc {a.returncode}, {changed} captions changed, undo rc "
                     f"{u.returncode}, all back {'y' if back else 'n'}")
    row(10, "full disk: build / verify / apply", codes(*procs), message(*procs), tb(*procs, b2, v2, *undos),
        "y" if lost else "n", "; ".join(notes))


@case(11, "a second apply right after the first: stale lines? exit code")
def c11(tmp):
    root = kohya_set(tmp)
    with kohya_server(root) as srv:
        cap("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url", srv.url)
    a1 = cap("apply", root)
    first = captions(root)
    a2 = cap("apply", root)
    summary = next((x for x in a2.stdout.splitlines() if x.startswith("capcheck apply")), "")
    row(11, "second apply right after", codes(a1, a2), message(a2), tb(a1, a2),
        "y" if captions(root) != first else "n", f"second: {summary}")


@case(12, "batch: /v1/batches-only endpoint, live retry 404")
def c12(tmp):
    root = tmp / "data"
    make_blocks(root, 20)
    faults = Faults(batches_only=True, scripted={"images/0003.png": ["500"], "images/0011.png": ["500"]})
    with many_server(root, faults) as srv:
        v = verify_many(root, srv, "--backend", "batch", "--poll", "0.01")
    rep = root / ".capcheck/reports/latest.jsonl"
    lines = [json.loads(x) for x in rep.read_text().splitlines()] if rep.exists() else []
    errors = [x["image"] for x in lines if x["status"] == "error"]
    row(12, "batch, batches-only server", codes(v), message(v), tb(v), "n",
        f"report written: {'y' if lines else 'n'} ({len(lines)} lines, errors {errors}); says: "
        + naming(v.stdout + v.stderr, "stored as errors", "404", "report:"))


@case(13, "--image-size 0, --timeout -1, --base-url notaurl")
def c13(tmp):
    root = kohya_set(tmp)
    procs, counts = [], []
    with kohya_server(root) as srv:
        for extra in (("--image-size", "0", "--base-url", srv.url), ("--timeout", "-1", "--base-url", srv.url),
                      ("--base-url", "notaurl")):
            before = srv.stats.snapshot()["requests"]
            procs.append(cap("verify", root, "--aspects", "framing", "--model", "demo-vision", *extra, "--fresh"))
            counts.append(srv.stats.snapshot()["requests"] - before)
    row(13, "--image-size 0 / --timeout -1 / --base-url notaurl", codes(*procs), message(*procs), tb(*procs), "n",
        f"requests made: {counts}")


@case(14, "a file given as DATASET")
def c14(tmp):
    root = kohya_set(tmp)
    img = root / "10_kanachan" / "img000.png"
    txt = img.with_suffix(".txt")
    with kohya_server(root) as srv:
        v = cap("verify", img, "--aspects", "framing", "--model", "demo-vision", "--base-url", srv.url)
    lnt = cap("lint", txt)
    a = cap("apply", img)
    row(14, "a file as DATASET (verify png / lint txt / apply png)", codes(v, lnt, a), message(v, lnt, a),
        tb(v, lnt, a), "n", f"{len(srv.seen)} requests")


@case(15, "password in --base-url: secret in the store / output?")
def c15(tmp):
    root = kohya_set(tmp)
    secret = "s3cretPW17"
    with kohya_server(root, Faults(credential=f"user:{secret}")) as srv:
        url = srv.url.replace("http://", f"http://user:{secret}@")
        v = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--base-url", url)
        # and a refused one (wrong password): is the right one, or this one, printed?
        bad = cap("verify", root, "--aspects", "framing", "--model", "demo-vision", "--fresh",
                  "--base-url", srv.url.replace("http://", "http://user:wrongPW17@"))
    files = [p for p in (root / ".capcheck").rglob("*") if p.is_file()]
    leaked = [p.relative_to(root).as_posix() for p in files if secret.encode() in p.read_bytes()]
    shown = secret in v.stdout + v.stderr
    shown_bad = "wrongPW17" in bad.stdout + bad.stderr
    row(15, "password in --base-url", codes(v, bad), message(v, bad), tb(v, bad), "n",
        f"{len(srv.seen)} requests; secret in files: {leaked or 'none'}; in output: {'y' if shown else 'n'}; "
        f"wrong password shown in the refused run's output: {'y' if shown_bad else 'n'}")


@case(16, "lint text output, a caption containing [red hat]")
def c16(tmp):
    root = kohya_set(tmp, 4)
    (root / "10_kanachan" / "img000.txt").write_text("kanachan, 1girl, solo, [red hat], [red hat], full body\n")
    lnt = cap("lint", root)
    out = lnt.stdout + lnt.stderr
    lines = [x for x in out.splitlines() if "img000" in x]
    row(16, "lint text with [red hat]", codes(lnt), message(lnt), tb(lnt), "n",
        f"'[red hat]' printed: {'y' if '[red hat]' in out else 'n'}; img000 lines: {lines[:2]}")


@case(17, "100 KB caption, ~5,750 tags, tags audit: tags asked capped?")
def c17(tmp):
    root = kohya_set(tmp, 4)
    import csv
    import gzip

    with gzip.open(ROOT / "captions" / "data" / "danbooru-general.csv.gz", "rt", encoding="utf-8") as fh:
        names = [r[0].replace("_", " ") for r in csv.reader(fh) if r and r[0] and r[0] not in ("1girl", "solo")]
    # plain tags (no punctuation, at most 4 words: a 7-word tag would make the line read as a sentence)
    tags = [n for n in names if len(n) >= 12 and len(n.split()) <= 4 and n.replace(" ", "").isalnum()][:5750]
    # the shipped vocabulary's general tags: all Danbooru tags, the way a tagger dumps them
    cap_file = root / "10_kanachan" / "img000.txt"
    cap_file.write_text("kanachan, 1girl, solo, " + ", ".join(tags) + ", full body\n")
    size = cap_file.stat().st_size
    with kohya_server(root) as srv:
        t0 = time.monotonic()
        v = cap("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url", srv.url)
        took = time.monotonic() - t0
    per = {k: len(asked_tags(r)) for k, r in zip(srv.keys, srv.seen, strict=True)}
    big = per.get("10_kanachan/img000.png", "not asked")
    rep = root / ".capcheck/reports/latest.jsonl"
    line = next((json.loads(x) for x in rep.read_text().splitlines() if "img000" in x), {}) if rep.exists() else {}
    tags_part = line.get("tags") or {}
    prompt = max((len(json.dumps(r)) for r in srv.seen), default=0)
    row(17, "100 KB caption, tags audit", codes(v), message(v), tb(v), "n",
        f"caption {size} B, {len(tags)} tags; {len(srv.seen)} requests; tags asked for it {big} (others: "
        f"{sorted(v for k, v in per.items() if 'img000' not in k)}); "
        f"report: checked {len(tags_part.get('checked') or [])}, "
        f"not asked: {dict(__import__('collections').Counter((tags_part.get('not_asked') or {}).values()))}; "
        f"says: {naming(v.stdout + v.stderr, 'over the cap', 'the cap')}; "
        f"largest request {prompt // 1024} KiB; {took:.1f}s")


def reviewed_set(tmp: Path) -> tuple[Path, subprocess.CompletedProcess]:
    root = kohya_set(tmp)
    with kohya_server(root) as srv:
        cap("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url", srv.url)
    return root, cap("route", root, "--aspects", "tags")


def start_review(root: Path, port: int) -> tuple[subprocess.Popen, str]:
    p = popen("review", root, "--port", port, "--no-open")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return p, ""
        except OSError:
            time.sleep(0.2)
    return p, "not listening"


def stop(p: subprocess.Popen) -> subprocess.CompletedProcess:
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
    else:
        out, err = p.communicate()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@case(18, "route --aspects tags then review: does review serve them?")
def c18(tmp):
    root, r = reviewed_set(tmp)
    placed = [p for p in (root / "_review").rglob("*.png")] if (root / "_review").exists() else []
    port = free_port()
    p, why = start_review(root, port)
    page, status = "", None
    if not why:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        status, page = resp.status, resp.read().decode(errors="replace")
        conn.close()
    alive = p.poll() is None
    done = stop(p)
    served = page.count("/image/")
    row(18, "route tags, then review", f"route {r.returncode}, review {'running' if alive else done.returncode}",
        message(done) or message(r), tb(r, done), "n",
        f"route: {naming(r.stdout, 'capcheck route', '/  ')}; route placed {len(placed)} images; "
        f"review page GET / -> {status}, {served} image links"
        f"{'; ' + why if why else ''}")


@case(19, "review server, Content-Length: 99999999999")
def c19(tmp):
    root, _ = reviewed_set(tmp)
    port = free_port()
    p, why = start_review(root, port)
    status, after = "", ""
    if not why:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(f"POST /move HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 99999999999\r\n\r\n{{}}".encode())
            status = s.recv(4096).decode(errors="replace").splitlines()[0]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/")
        after = str(conn.getresponse().status)
        conn.close()
    done = stop(p)
    row(19, "review, Content-Length 99999999999", f"review {done.returncode} (stopped by SIGINT)",
        message(done) if [x for x in done.stderr.splitlines() if not noise(x)] else "(nothing on stderr)",
        tb(done), "n", f"answer: {status or why}; GET / afterwards: {after}")


@case(20, "`capcheck --help` order (init after run)")
def c20(tmp):
    h = cap("--help")
    names = []
    for line in h.stdout.splitlines():
        cells = line.strip("│ ").split()
        # a command's row: "│ name   summary", the name at column 2 (a wrapped summary starts further right)
        if (line.startswith("│ ") and cells and line[2] != " " and not cells[0].startswith("-")
                and cells[0].replace("-", "").isidentifier() and cells[0] not in names):
            names.append(cells[0])
    order = ", ".join(names)
    ok = names[:2] == ["run", "init"]
    row(20, "--help order", codes(h), "(stdout) " + order, tb(h), "n",
        f"run first, init second: {'y' if ok else 'n'}")


# ---------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated case numbers")
    args = ap.parse_args()
    only = {int(x) for x in args.only.split(",") if x}
    import verifier

    print(f"capcheck: {CAPCHECK}; verifier imported here from {Path(verifier.__file__).parent}; "
          f"PYTHONPATH={os.environ.get('PYTHONPATH', '')}", file=sys.stderr)
    for number, title, fn in CASES:
        if only and number not in only:
            continue
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"fault{number:02d}-") as tmp:
            CURRENT_TMP[:] = [tmp]
            try:
                fn(Path(tmp))
            except Exception as exc:  # the script's fault, not necessarily capcheck's: say so in the row
                row(number, title, "", f"SCRIPT ERROR: {type(exc).__name__}: {exc}"[:150], "", "",
                    traceback.format_exc().strip().splitlines()[-3][:120])
        print(f"case {number}: {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    print("| case | exit code | message (first stderr line, shortened) | traceback | data lost | notes |")
    print("|---|---|---|---|---|---|")
    for r in ROWS:
        print("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in r) + " |")


if __name__ == "__main__":
    main()
