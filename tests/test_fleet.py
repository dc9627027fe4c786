"""Several servers: real demo servers in their own processes, one killed mid-run."""

import asyncio
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from verifier.core.store import Store
from verifier.core.verdict import FIX, OK
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.errors import BackendUnavailable

from clothed47 import EXPECTED_FIX_IMAGES

ROOT = Path(__file__).resolve().parent.parent


def start(dataset: Path, latency: float = 0.05) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "verifier.demo.server", "--truth", str(dataset / "truth.json"),
                             "--root", str(dataset), "--latency", str(latency)], stdout=subprocess.PIPE, text=True,
                            cwd=ROOT)
    return proc, proc.stdout.readline().strip()


def requests_seen(url: str) -> int:
    with urllib.request.urlopen(url + "/stats", timeout=5) as fh:
        return json.load(fh)["requests"]


@pytest.fixture
def two_servers(clothed47_dataset):
    procs = [start(clothed47_dataset) for _ in range(2)]
    yield procs
    for proc, _ in procs:
        proc.kill()
        proc.wait()


def run(root, policy, notices, on_result=None, **options):
    opts = VerifyOptions(**{"model": "demo-vision", "retry_base": 0.05, **options})
    with Store(root) as store:
        return asyncio.run(verify_dataset(root, policy, opts, store, on_result=on_result, on_notice=notices.append))


def test_two_servers_share_the_work(clothed47_dataset, keichan, two_servers):
    (_, a), (_, b) = two_servers
    notices = []
    result = run(clothed47_dataset, keichan, notices, base_url=[a, b], concurrency=3)
    assert result.count(FIX) == EXPECTED_FIX_IMAGES and result.count(OK) == 47 - EXPECTED_FIX_IMAGES
    seen = [requests_seen(a), requests_seen(b)]
    assert sum(seen) == 47 and min(seen) >= 15, seen  # fewest in flight first: both get a fair share
    assert result.max_in_flight <= 6 and notices == []


def test_one_server_killed_mid_run_the_other_finishes(clothed47_dataset, keichan, two_servers):
    (victim, a), (_, b) = two_servers
    notices, answered, before_kill = [], [], []

    def on_result(r):
        answered.append(r)
        if len(answered) == 10:
            before_kill.append(requests_seen(a))
            victim.kill()
            victim.wait()

    result = run(clothed47_dataset, keichan, notices, on_result, base_url=[a, b], concurrency=2)
    assert len(result.results) == 47
    assert result.count(FIX) == EXPECTED_FIX_IMAGES and result.count(OK) == 47 - EXPECTED_FIX_IMAGES
    assert before_kill[0] >= 3  # the victim had been answering
    assert len(notices) == 1 and notices[0].startswith(f"{a} stopped answering") and "continuing on 1" in notices[0]
    with Store(clothed47_dataset) as store:
        assert len(store.verdicts()) == 47


def test_every_server_gone_stops_the_run_keeping_the_answers(clothed47_dataset, keichan, two_servers):
    procs = two_servers
    answered = []

    def on_result(r):
        answered.append(r)
        if len(answered) == 8:
            for proc, _ in procs:
                proc.kill()
                proc.wait()

    with pytest.raises(BackendUnavailable, match="every server stopped answering"):
        run(clothed47_dataset, keichan, [], on_result, base_url=[u for _, u in procs], concurrency=2)
    with Store(clothed47_dataset) as store:
        kept = store.verdicts()
    assert len(kept) >= 8 and all(r["status"] in (OK, FIX) for r in kept)  # no error verdicts for the rest
