"""`capcheck verify` as a user runs it: a subprocess, a loopback server, kills."""

import json
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults

from conftest import EXAMPLES, error_lines

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
REPORT_FIELDS = {"image", "status", "fixes", "observation", "backend", "model", "attempts", "latency_s", "error", "raw"}


@pytest.fixture
def model(clothed47_dataset, keichan):
    return DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)


def argv(root, url, *extra):
    return [sys.executable, "-m", "verifier.cli.main", "verify", str(root), "--policy", POLICY, "--model", "demo-vision",
            "--base-url", url, *map(str, extra)]


def capcheck(*args, timeout=300):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


def stored(root):
    path = root / ".capcheck" / "capcheck.db"
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT image FROM verdicts")]
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        db.close()


def test_verify_summary_reports_and_exit_code(clothed47_dataset, model):
    with DemoServer(model) as server:
        proc = capcheck(*argv(clothed47_dataset, server.url, "--concurrency", 8))
    assert proc.returncode == 0, proc.stderr
    assert "47 images · 47 asked, 0 from the store" in proc.stdout
    assert "ok 23 · fix 24 · refused 0 · error 0" in proc.stdout
    assert re.search(r"framing: image shows cowboy shot \(caption says full body\)\s*│\s*× 22", proc.stdout)
    assert re.search(r"expression: image shows neutral \(caption says soft smile\)\s*│\s*× 1", proc.stdout)
    assert re.search(r"tokens: [\d,]+ prompt \+ [\d,]+ completion", proc.stdout)
    reports = clothed47_dataset / ".capcheck" / "reports"
    lines = [json.loads(x) for x in (reports / "latest.jsonl").read_text().splitlines()]
    assert len(lines) == 47 and set(lines[0]) >= REPORT_FIELDS
    assert (reports / "latest.jsonl").read_text() == (reports / "run-0001.jsonl").read_text()
    page = (reports / "latest.html").read_text()
    assert page.count('class="card"') == 47 and "<mark>full body</mark>" in page


def test_kill_mid_run_then_resume(clothed47_dataset, model):
    with DemoServer(model, Faults(latency=0.25)) as server:
        proc = subprocess.Popen(argv(clothed47_dataset, server.url, "--concurrency", 4), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(stored(clothed47_dataset)) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        answered = set(stored(clothed47_dataset))
        assert 12 <= len(answered) < 47
        sent_before = server.stats.requests
        assert sent_before - len(answered) <= 4  # lost at most what was in flight
        server.stats.reset()
        proc = capcheck(*argv(clothed47_dataset, server.url, "--concurrency", 4))
        assert proc.returncode == 0, proc.stderr
        asked_again = {k for k, _, _ in server.stats.log}
    assert not asked_again & answered  # nothing answered before was asked again
    assert len(asked_again) == 47 - len(answered)
    images = stored(clothed47_dataset)
    assert len(images) == 47 and len(set(images)) == 47  # exactly one verdict each
    assert f"{len(answered)} from the store" in proc.stdout and "fix 24" in proc.stdout


def test_ctrl_c_keeps_answers_and_says_how_to_resume(clothed47_dataset, model):
    with DemoServer(model, Faults(latency=0.3)) as server:
        proc = subprocess.Popen(argv(clothed47_dataset, server.url, "--concurrency", 2), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(stored(clothed47_dataset)) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        in_flight_at_end = server.stats.in_flight
    assert proc.returncode == 130
    assert "run the same command to resume" in err
    assert 4 <= len(stored(clothed47_dataset)) < 47
    assert in_flight_at_end == 0  # the requests were cancelled, not left running


def test_exit_codes_for_runs_that_cannot_run(clothed47_dataset, model, tmp_path):
    with DemoServer(model, Faults(scripted={k: ["401"] * 9 for k in json.loads(
            (clothed47_dataset / "truth.json").read_text())})) as server:
        proc = capcheck(*argv(clothed47_dataset, server.url))
    assert proc.returncode == 4 and error_lines(proc.stderr)[0].startswith(f"error: {server.url}: HTTP 401")
    t0 = time.monotonic()
    proc = capcheck(*argv(clothed47_dataset, "http://127.0.0.1:9/v1"))  # nothing listens on port 9
    assert time.monotonic() - t0 < 20  # was: 4 attempts with backoff for each of the 47 images
    assert proc.returncode == 4 and error_lines(proc.stderr) == [
        "error: http://127.0.0.1:9/v1: cannot connect (All connection attempts failed); is the server running?"]
    proc = capcheck(*argv(clothed47_dataset, "http://127.0.0.1:9/v1", "--aspects", "framing,pose"))
    assert proc.returncode == 2 and "no aspect 'pose' in the policy" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = capcheck(*argv(empty, "http://127.0.0.1:9/v1"))
    assert proc.returncode == 2 and error_lines(proc.stderr) == [f"error: {empty.resolve()}: no images with captions"]
