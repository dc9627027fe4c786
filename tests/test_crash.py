"""The journal and the lock under real faults: `capcheck apply` killed with
SIGKILL at random moments, two writers at once, a disk that refuses writes.

Every case drives the `capcheck` CLI in child processes over real files and
the real SQLite store; the dataset is 200 captions that all need a fix."""

import asyncio
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from captions.lock import DatasetLock
from verifier.core.report import write_reports
from verifier.core.store import Store
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.demo.blocks import CAPTION as BLOCKS_CAPTION
from verifier.demo.blocks import make_blocks
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults

from conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
POLICY = EXAMPLES / "keichan" / "policy.yaml"
CAPTION = BLOCKS_CAPTION.format(framing="full body")  # what every caption says
N = 200


@pytest.fixture(scope="module")
def verified_master(tmp_path_factory, keichan):
    """The 200 verified once (200 fix verdicts and their report), copied for each test."""
    root = tmp_path_factory.mktemp("crash") / "data"
    make_blocks(root, N, size=(64, 96), seen=lambda i: {"framing": "cowboy shot"})  # the model sees one in each
    with DemoServer(DemoModel.load(root / "truth.json", root, keichan)) as server, Store(root) as store:
        opts = VerifyOptions(model="demo-vision", base_url=server.url, aspects=["framing"], concurrency=8)
        run = asyncio.run(verify_dataset(root, keichan, opts, store))
        write_reports(root, run, keichan)
    assert run.count("fix") == N
    return root


@pytest.fixture
def dataset(tmp_path, verified_master):
    dest = tmp_path / "data set"
    shutil.copytree(verified_master, dest)
    return dest


def captions(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "images").glob("*.txt"))}


def temps(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*.tmp"))


def capcheck(*args: object, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
                          **kw)


def popen(*args: object, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "verifier.cli.main", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **kw)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def journal_counts(root: Path) -> tuple[int, int]:
    """(journal rows of apply runs, distinct captions they name): equal when no caption was journaled twice."""
    db = sqlite3.connect(root / ".capcheck" / "capcheck.db")
    try:
        rows = db.execute("SELECT j.path FROM journal j JOIN runs r ON r.id = j.run_id WHERE r.kind='apply'").fetchall()
    finally:
        db.close()
    return len(rows), len({r[0] for r in rows})


def test_kill_9_during_apply_then_undo_restores_every_byte_and_apply_works_again(dataset, tmp_path):
    original = captions(dataset)
    spare = tmp_path / "spare"
    shutil.copytree(dataset, spare)
    started = time.monotonic()
    whole = capcheck("apply", spare)  # how long a whole apply takes here: the kills land inside it
    took = time.monotonic() - started
    assert whole.returncode == 0 and f"changed {N}," in whole.stdout, whole.stdout + whole.stderr
    rng = random.Random(17)
    cut = 0
    for attempt in range(8):
        proc = popen("apply", dataset)
        first = dataset / "images" / "0000.txt"  # written first: the writes have begun
        while proc.poll() is None and first.read_bytes() == original[first.name]:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6) * took)  # then a random moment among the writes
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        written = sum(captions(dataset)[name] != original[name] for name in original)
        cut += 0 < written < N
        undo = capcheck("undo", dataset)
        if written == 0 and "nothing to undo" in undo.stderr:
            assert captions(dataset) == original  # killed before its first write
        else:
            assert undo.returncode == 0, f"try {attempt}: {undo.stdout}{undo.stderr}"
            assert captions(dataset) == original, f"try {attempt}: undo did not restore every byte"
        assert temps(dataset) == [], f"try {attempt}: temporary files left"
        again = capcheck("apply", dataset)
        assert again.returncode == 0 and f"changed {N}," in again.stdout, again.stdout + again.stderr
        assert capcheck("undo", dataset).returncode == 0 and captions(dataset) == original
    assert cut >= 2, f"only {cut} of 8 kills landed between the first and the last write"


def test_a_crash_between_the_journal_and_the_rename_is_rolled_back_at_the_next_start(dataset):
    """The two windows a kill can hit, made by hand: intent recorded but no rename (a temp file
    left), and rename done but the intent not marked done. The next writer settles both."""
    first, second = dataset / "images" / "0000.txt", dataset / "images" / "0001.txt"
    new = CAPTION.replace("full body", "cowboy shot")
    with Store(dataset) as store:
        store.start_run("apply")
        store.record(first, CAPTION, new, "apply")  # step 1 only; step 2's temp file is there
        (first.parent / ".0000.txt.abcd1234.tmp").write_text(new)
        store.record(second, CAPTION, new, "apply")  # steps 1-3; never marked done
        second.write_text(new)
    proc = capcheck("undo", dataset)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 caption write(s) had happened" in proc.stderr and "1 had not" in proc.stderr
    assert "removed 1 temporary file(s)" in proc.stderr and temps(dataset) == []
    assert "restored 1 caption(s)" in proc.stdout and first.read_text() == CAPTION and second.read_text() == CAPTION


def test_two_applies_at_once_write_each_caption_once_and_undo_works(dataset):
    original = captions(dataset)
    procs = [popen("apply", dataset, env={"CAPCHECK_LOCK_WAIT": "120"}) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    summaries = sorted(o.splitlines()[-1] for o, _ in outs)
    assert f"changed {N}," in summaries[1] and f"applied already (by an earlier apply) {N}" in summaries[0], summaries
    assert any("waiting for pid" in e and "capcheck apply" in e for _, e in outs), outs
    assert journal_counts(dataset) == (N, N)  # no caption journaled by both
    undo = capcheck("undo", dataset)
    assert undo.returncode == 0 and captions(dataset) == original, undo.stdout + undo.stderr


def test_a_second_apply_reports_its_own_fixes_as_done_not_stale(dataset):
    assert capcheck("apply", dataset).returncode == 0
    again = capcheck("apply", dataset)
    assert again.returncode == 0, again.stdout
    assert "stale" not in again.stdout.replace("stale 0", ""), again.stdout
    assert "changed 0, unchanged 0, stale 0" in again.stdout and f"applied already (by an earlier apply) {N}" in \
        again.stdout
    (dataset / "images" / "0005.txt").write_text(CAPTION.replace("smile", "frown"))  # a hand edit is still stale
    third = capcheck("apply", dataset)
    assert third.returncode == 1 and "stale 1" in third.stdout and "stale: images/0005.png" in third.stdout


def test_a_writer_that_cannot_get_the_lock_refuses_with_one_line_naming_the_holder(dataset):
    before = captions(dataset)
    with DatasetLock(dataset, "test-holder"):
        proc = capcheck("apply", dataset, env={"CAPCHECK_LOCK_WAIT": "0.5"})
        others = [capcheck(*command, env={"CAPCHECK_LOCK_WAIT": "0"}) for command in (
            ("undo", dataset), ("build", dataset, "--policy", POLICY), ("ingest", dataset, "--aspects", "framing"),
            ("route", dataset, "--aspects", "framing"),
            ("verify", dataset, "--policy", POLICY, "--model", "m", "--base-url", "http://127.0.0.1:9/v1"))]
    line = one_line_error(proc)
    assert proc.returncode == 2 and f"pid {os.getpid()} (capcheck test-holder)" in line and "busy" in line, line
    for other in others:
        assert other.returncode == 2 and "the dataset is busy" in one_line_error(other), other.args
    assert captions(dataset) == before
    assert capcheck("apply", dataset).returncode == 0  # released with the holder


def test_two_verify_runs_at_once_pay_for_each_request_once(clothed47_dataset, keichan):
    model = DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)
    with DemoServer(model, Faults(latency=0.05)) as server:
        args = ("verify", clothed47_dataset, "--policy", POLICY, "--model", "demo-vision", "--base-url", server.url,
                "--concurrency", "4")
        procs = [popen(*args, env={"CAPCHECK_LOCK_WAIT": "300"}) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        requests = server.stats.requests
    assert [p.returncode for p in procs] == [0, 0], outs
    assert requests == 47, f"{requests} requests for 47 images"
    stdouts = sorted((o for o, _ in outs), key=lambda o: "47 asked" not in o)
    assert "47 asked, 0 from the store" in stdouts[0] and "0 asked, 47 from the store" in stdouts[1], stdouts
    reports = sorted(p.name for p in (clothed47_dataset / ".capcheck" / "reports").glob("run-*.jsonl"))
    assert len(reports) == 2  # each run its own report


def _limit_file_size(limit: int):
    def apply_limit() -> None:  # in the child, before exec
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply_limit


def test_a_disk_that_refuses_writes_stops_apply_with_one_line_and_loses_nothing(dataset):
    """RLIMIT_FSIZE in the child: the kernel refuses every write past the limit (EFBIG), as a
    full disk refuses with ENOSPC; SQLite reports both as 'database or disk is full'."""
    original = captions(dataset)
    with Store(dataset):
        pass  # checkpointed: the WAL is empty, so the store may grow a little before it is refused
    limit = (dataset / ".capcheck" / "capcheck.db").stat().st_size
    proc = capcheck("apply", dataset, preexec_fn=_limit_file_size(limit))
    line = one_line_error(proc)
    assert proc.returncode == 2 and "capcheck.db" in line and "cannot write the store" in line, line
    now = captions(dataset)
    written = [n for n in now if now[n] != original[n]]
    assert 0 < len(written) < N  # stopped half way ...
    fixed = CAPTION.replace("full body", "cowboy shot").encode()
    assert all(now[n] in (original[n], fixed) for n in now)  # ... with no caption torn
    assert temps(dataset) == []
    undo = capcheck("undo", dataset)  # room again: every write it made is journaled, and undone
    assert undo.returncode == 0 and captions(dataset) == original, undo.stdout + undo.stderr


def test_a_disk_that_refuses_writes_stops_verify_and_build_with_one_line(clothed47_dataset, keichan):
    model = DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)
    with Store(clothed47_dataset):
        pass
    limit = (clothed47_dataset / ".capcheck" / "capcheck.db").stat().st_size
    with DemoServer(model) as server:
        proc = capcheck("verify", clothed47_dataset, "--policy", POLICY, "--model", "demo-vision", "--base-url",
                        server.url, preexec_fn=_limit_file_size(limit))
    line = one_line_error(proc)
    assert proc.returncode == 2 and "cannot write the store" in line, line
    with Store(clothed47_dataset) as store:  # what was stored before the refusal is whole and readable
        assert all(row["status"] in ("ok", "fix") for row in store.verdicts())
    for txt in clothed47_dataset.rglob("*.txt"):
        txt.unlink()
    proc = capcheck("build", clothed47_dataset, "--policy", POLICY, preexec_fn=_limit_file_size(limit))
    line = one_line_error(proc)
    assert proc.returncode == 2 and "cannot write the store" in line, line
    with Store(clothed47_dataset) as store:
        assert all((clothed47_dataset / row["path"]).read_text() == row["after"] for row in store.journal())


@pytest.fixture
def tiny_disk(tmp_path):
    """A real file system that fills up: a 4 MiB tmpfs (needs root, as mount does; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_full_disk_stops_apply_with_one_line_and_loses_nothing(dataset, tiny_disk):
    """ENOSPC for real: the dataset on a tmpfs filled to a few pages short of full."""
    root = tiny_disk / "data"
    shutil.copytree(dataset, root)
    original = captions(root)
    free = shutil.disk_usage(tiny_disk).free
    (tiny_disk / "filler").write_bytes(b"\0" * max(0, free - 96 * 1024))
    proc = capcheck("apply", root)
    line = one_line_error(proc)
    assert proc.returncode == 2 and ("disk is full" in line or "No space left" in line), line
    now = captions(root)
    fixed = CAPTION.replace("full body", "cowboy shot").encode()
    assert all(now[n] in (original[n], fixed) for n in now)  # no caption torn
    assert temps(root) == []
    (tiny_disk / "filler").unlink()
    undo = capcheck("undo", root)
    assert undo.returncode == 0 and captions(root) == original, undo.stdout + undo.stderr


def test_a_holder_killed_with_9_leaves_no_lock_behind(dataset):
    code = ("import sys, time; from captions.lock import DatasetLock\n"
            "with DatasetLock(sys.argv[1], 'apply'):\n    print('held', flush=True); time.sleep(600)\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(dataset)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = capcheck("undo", dataset, env={"CAPCHECK_LOCK_WAIT": "0"})
        assert busy.returncode == 2 and f"pid {holder.pid} (capcheck apply)" in one_line_error(busy)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    with DatasetLock(dataset, "test", wait=0), DatasetLock(dataset, "test nested", wait=0):
        pass  # free at once, and re-entrant within one process (`capcheck run` builds, verifies, applies)
    assert capcheck("apply", dataset, env={"CAPCHECK_LOCK_WAIT": "0"}).returncode == 0
