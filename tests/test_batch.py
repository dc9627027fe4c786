"""Batch jobs against the demo server's /v1/files + /v1/batches, driven by the openai SDK."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from verifier.core import batchjob
from verifier.core.store import Store
from verifier.core.verdict import ERROR, FIX, OK
from verifier.core.verify import ASKED, STORED, VerifyOptions, verify_dataset
from verifier.demo.blocks import make_blocks
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
POLICY = EXAMPLES / "keichan" / "policy.yaml"
VLLM = Path(__file__).parent / "fakes" / "vllm_run_batch.py"


@pytest.fixture(scope="module")
def many_master(tmp_path_factory):
    root = tmp_path_factory.mktemp("many") / "data"
    make_blocks(root, 200)
    return root


@pytest.fixture
def many(tmp_path, many_master):
    dest = tmp_path / "many"
    shutil.copytree(many_master, dest)
    return dest


@pytest.fixture
def server(many, keichan):
    with DemoServer(DemoModel.load(many / "truth.json", many, keichan)) as srv:
        yield srv


def run(root, policy, notices=None, **options):
    opts = VerifyOptions(**{"model": "demo-vision", "aspects": ["framing"], "poll": 0.01, "retry_base": 0.02,
                            **options})
    with Store(root) as store:
        return asyncio.run(verify_dataset(root, policy, opts, store, on_notice=(notices if notices is not None else []).append))


def verdicts(result):
    return {r.image: (r.verdict.status, sorted((f.aspect, f.image, f.caption) for f in r.verdict.fixes))
            for r in result.results}


def test_200_images_batch_gives_the_live_verdicts_and_a_live_run_then_asks_nothing(many, keichan, server, tmp_path,
                                                                                  monkeypatch):
    live_copy = tmp_path / "live"
    shutil.copytree(many, live_copy)
    live = run(live_copy, keichan, base_url=server.url)
    server.stats.reset()
    monkeypatch.setattr(batchjob, "MAX_LINES", 64)  # the API's 50,000-line limit, scaled down: 4 files
    notices = []
    batch = run(many, keichan, notices, backend="batch", base_url=server.url)
    assert server.stats.requests == 0 and server.desk.lines_answered == 200  # all through the batch endpoint
    assert len(server.desk.batches) == 4 and sorted(len(b["_lines"]) for b in server.desk.batches.values()) == [
        8, 64, 64, 64]
    assert verdicts(batch) == verdicts(live)
    assert batch.count(FIX) == 40 and batch.count(OK) == 160 and batch.backend == "openai"
    assert any("in_progress" in n for n in notices) and any("completed" in n for n in notices)
    line = server.desk.batches["batch_0001"]["_lines"][0]
    assert set(line) == {"custom_id", "method", "url", "body"} and line["url"] == "/v1/chat/completions"
    assert set(line["body"]) == {"model", "messages", "response_format"}  # what the live request sends
    again = run(many, keichan, base_url=server.url)  # live, same model: the batch's answers stand
    assert server.stats.requests == 0 and all(r.source == STORED for r in again.results)
    with Store(many) as store:
        assert len(store.verdicts()) == 200
        assert all(b["collected"] for b in store.db.execute("SELECT * FROM batches"))


def test_failed_and_expired_lines_end_with_exactly_one_verdict_each(many, keichan, server):
    failing = {f"images/{i:04d}.png": ["500", "ok"] for i in (1, 2, 3)}
    server.faults.scripted = failing
    server.desk.expire_after = 190  # the last 10 lines expire
    result = run(many, keichan, backend="batch", base_url=server.url)  # default: retried live
    assert len(result.results) == 200 and len({r.image for r in result.results}) == 200
    assert all(r.verdict.status in (OK, FIX) for r in result.results)
    assert server.stats.requests == 13  # only the 3 failed and 10 expired lines were asked live
    with Store(many) as store:
        rows = store.verdicts()
    assert len(rows) == 200 and len({r["image"] for r in rows}) == 200


def test_failed_lines_in_a_new_batch_or_as_errors(many, keichan, server):
    server.faults.scripted = {f"images/{i:04d}.png": ["500", "ok"] for i in (4, 5)}
    result = run(many, keichan, backend="batch", base_url=server.url, batch_retry="batch", only=["*00[0-1]?.png"])
    assert len(server.desk.batches) == 2 and len(server.desk.batches["batch_0002"]["_lines"]) == 2
    assert all(r.verdict.status in (OK, FIX) for r in result.results) and server.stats.requests == 0
    server.faults.scripted = {"images/0030.png": ["500", "ok"]}
    errors = run(many, keichan, backend="batch", base_url=server.url, batch_retry="error", only=["*003?.png"])
    failed = [r for r in errors.results if r.verdict.status == ERROR]
    assert [r.image for r in failed] == ["images/0030.png"] and "demo fault 500" in failed[0].verdict.reason
    again = run(many, keichan, backend="batch", base_url=server.url, only=["*003?.png"])  # errors are asked again
    assert len(server.desk.batches["batch_0004"]["_lines"]) == 1
    assert [r.source for r in again.results if r.image == "images/0030.png"] == [ASKED]


def test_no_wait_submits_and_exits_then_a_rerun_collects(many, keichan, server):
    first = run(many, keichan, backend="batch", base_url=server.url, wait=False, only=["*001?.png"])
    assert first.pending == 10 and first.results == [] and first.requests == 10
    second = run(many, keichan, backend="batch", base_url=server.url, wait=False, only=["*001?.png"])
    assert len(server.desk.batches) == 1 and second.requests == 0  # polled, not submitted again
    for _ in range(5):  # each poll moves the demo batch one step: validating -> ... -> completed
        third = run(many, keichan, backend="batch", base_url=server.url, wait=False, only=["*001?.png"])
        if not third.pending:
            break
    assert third.pending == 0 and len(third.results) == 10 and len(server.desk.batches) == 1


def test_killed_while_waiting_the_rerun_submits_nothing_new(many, keichan, server):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", "verify", str(many), "--policy", str(POLICY),
                             "--model", "demo-vision", "--aspects", "framing", "--backend", "batch", "--base-url",
                             server.url, "--poll", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not server.desk.batches and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # submitted (and stored): now it waits an hour between polls
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "batches keep running on the server" in stderr, stderr
    assert len(server.desk.batches) == 1 and server.desk.batches["batch_0001"]["status"] != "cancelled"
    result = run(many, keichan, backend="batch", base_url=server.url)
    assert len(server.desk.batches) == 1 and result.requests == 0  # polled the stored batch
    assert len(result.results) == 200 and result.count(FIX) == 40


def test_batch_file_for_vllm_run_batch_and_results_read_back(many, keichan, server, tmp_path):
    out, results = tmp_path / "requests.jsonl", tmp_path / "results.jsonl"
    notices = []
    written = run(many, keichan, notices, batch_file=str(out))
    assert written.results == [] and written.pending == 200 and server.stats.requests == 0
    assert any("vllm run-batch" in n for n in notices)
    proc = subprocess.run([sys.executable, str(VLLM), "-i", str(out), "-o", str(results), "--model", "demo-vision",
                           "--url", server.url], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    read = run(many, keichan, batch_results=str(results))
    assert len(read.results) == 200 and read.count(FIX) == 40 and read.count(OK) == 160
    server.stats.reset()
    again = run(many, keichan, base_url=server.url)
    assert server.stats.requests == 0 and all(r.source == STORED for r in again.results)
    other = run(many, keichan, notices, batch_results=str(results), aspects=["framing", "view"])  # another prompt
    assert other.results == [] and any("200 lines answer no image still to verify" in n for n in notices)


def test_vllm_fixture_rejects_a_malformed_line(tmp_path, server):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"custom_id": "x", "method": "GET", "url": "/v1/chat/completions", "body": {}}) + "\n")
    proc = subprocess.run([sys.executable, str(VLLM), "-i", str(bad), "-o", str(tmp_path / "o.jsonl"), "--model",
                           "m", "--url", server.url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "unsupported GET" in proc.stderr


def test_a_cancelled_batch_is_collected_and_its_rest_asked_by_the_next_run(many, keichan, server):
    from verifier.core.backends.batch import BatchClient

    run(many, keichan, backend="batch", base_url=server.url, wait=False, only=["*002?.png"])

    async def cancel():
        client = BatchClient(server.url, None)
        try:
            return await client.cancel("batch_0001")
        finally:
            await client.aclose()

    assert asyncio.run(cancel()).status == "cancelling"
    notices = []
    second = run(many, keichan, notices, backend="batch", base_url=server.url, only=["*002?.png"])
    assert second.results == [] and any("was cancelled: 10 requests not answered" in n for n in notices)
    assert len(server.desk.batches) == 1 and server.stats.requests == 0  # not retried: the user stopped it
    third = run(many, keichan, backend="batch", base_url=server.url, only=["*002?.png"])
    assert len(server.desk.batches) == 2 and len(third.results) == 10 and third.count(FIX) == 2


def test_a_batches_only_server_keeps_the_completed_lines_and_counts_the_failed_as_errors(many, keichan, server):
    """`/v1/batches` only: the live retry of the failed lines gets 404; the completed lines stand."""
    failing = [f"images/{i:04d}.png" for i in (3, 17, 29, 41, 55, 62, 70, 81, 88)]
    server.faults.scripted = {image: ["500"] for image in failing}
    server.faults.batches_only = True
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "verifier.cli.main", "verify", str(many), "--policy", str(POLICY),
                           "--model", "demo-vision", "--aspects", "framing", "--backend", "batch", "--base-url",
                           server.url, "--poll", "0.01", "--only", "images/00[0-8]?.png", "--only", "images/0090.png"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the run completed: exit 0, whatever the verdicts
    assert "Traceback" not in proc.stderr and "9 requests stored as errors" in proc.stderr, proc.stderr
    assert "91 images · 91 asked" in proc.stdout and "error 9" in proc.stdout, proc.stdout
    lines = [json.loads(x) for x in (many / ".capcheck" / "reports" / "latest.jsonl").read_text().splitlines()]
    errors = {x["image"]: x["reason"] for x in lines if x["status"] == ERROR}
    assert len(lines) == 91 and sorted(errors) == failing
    assert all("demo fault 500" in why and "live retry" in why and "404" in why for why in errors.values()), errors
    assert sum(x["status"] in (OK, FIX) for x in lines) == 82
    server.faults.batches_only, server.faults.scripted = False, {}
    again = run(many, keichan, backend="batch", base_url=server.url, only=["images/00[0-8]?.png", "images/0090.png"])
    assert sorted(r.image for r in again.results if r.source == ASKED) == failing  # errors are asked again
