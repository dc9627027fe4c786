"""Issue 17: the audit's human loop says what is true.

As a user runs it: a kohya folder verified against the loopback demo server
(real HTTP, the openai SDK), `route`, then `capcheck review` started as a
child process and used over HTTP as its page does (GET /, POST /move,
POST /ingest), with the real store (SQLite) underneath."""

import html
import http.client
import json
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager

import pytest

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

import kohya


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    root = tmp_path_factory.mktemp("kohya") / "kanachan"
    kohya.make(root)
    # A duplicate: the same bytes as img003 under another name, with its own caption.
    shutil.copyfile(root / kohya.name(3), root / "10_kanachan/img099.png")
    (root / "10_kanachan/img099.txt").write_text("kanachan, 1girl, solo, long hair, blonde hair, blue eyes, "
                                                 "school swimsuit, one-piece swimsuit, smile, cowboy shot\n")
    with DemoServer(DemoModel.load(kohya.truth_file(root), root)) as server:
        proc = capcheck("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url",
                        server.url)
    assert proc.returncode == 0, proc.stderr
    return root


@pytest.fixture
def dataset(tmp_path, master):
    dest = tmp_path / "kanachan"
    shutil.copytree(master, dest)
    return dest


@contextmanager
def review(root):
    """`capcheck review` as a user starts it; yields (first line it printed, the page's address)."""
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", "review", str(root), "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("capcheck review:"), first + proc.stderr.read()
        yield first, proc.stdout.readline().split()[1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def call(url, method, path, body=None):
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, data, {"Content-Type": "application/json"} if data else {})
    answer = conn.getresponse()
    text = answer.read().decode()
    return answer.status, json.loads(text) if method == "POST" else text


def cards(page):
    """(path, name, caption) of every card on the page."""
    return [(html.unescape(p), html.unescape(n), html.unescape(re.sub(r"</?mark>", "", c)))
            for p, n, c in re.findall(r'data-path="([^"]+)">.*?<div class=name>(.*?)</div>.*?<pre>(.*?)</pre>', page, re.S)]


def test_route_tags_then_review_serves_the_tags_folders_and_ingests_them(dataset):
    proc = capcheck("route", dataset, "--aspects", "tags", "--all")
    assert proc.returncode == 0, proc.stderr
    # mismatch/ holds images: the hint names the caption files to edit, and the review page it points to works.
    assert ("edit these captions in the dataset by hand: 10_kanachan/img000.txt, 10_kanachan/img001.txt"
            in proc.stdout)
    assert "capcheck review" in proc.stdout
    with review(dataset) as (first, url):
        assert re.match(r"capcheck review: \d+ image\(s\) waiting", first)
        status, page = call(url, "GET", "/")
        assert status == 200
        shown = {path: name for path, name, _ in cards(page)}
        assert shown["tags/glasses/removed/img003.png"] == f"{kohya.name(3)} · glasses"
        assert shown["tags/mismatch/img000.png"] == "10_kanachan/img000.png"
        assert "edit its caption by hand, in the dataset: 10_kanachan/img000.txt" in page
        # A tag card moves between kept/ and removed/; a mismatch card has nowhere to go.
        status, moved = call(url, "POST", "/move", {"path": "tags/brown_jacket/removed/img010.png", "to": "kept"})
        assert status == 200 and moved["path"] == "tags/brown_jacket/kept/img010.png"
        assert (dataset / "_review/tags/brown_jacket/kept/img010.png").exists()
        status, refused = call(url, "POST", "/move", {"path": "tags/mismatch/img000.png", "to": "kept"})
        assert status == 400 and "fixed by hand" in refused["error"]
        status, done = call(url, "POST", "/ingest", {})
        assert status == 200, done
        assert done["lines"][0].startswith("tags: changed ")
    glasses = (dataset / kohya.name(3)).with_suffix(".txt").read_text()
    jacket = (dataset / kohya.name(10)).with_suffix(".txt").read_text()
    assert "glasses" not in glasses and "brown jacket" in jacket  # the person's answers, written


def test_an_ingested_image_is_not_waiting_any_more(dataset):
    proc = capcheck("route", dataset, "--aspects", "framing", "--all")
    assert proc.returncode == 0, proc.stderr
    with review(dataset) as (first, _):
        assert first.startswith("capcheck review: 13 image(s) waiting")
    proc = capcheck("ingest", dataset / "_review", "--aspects", "framing")
    assert proc.returncode == 0, proc.stderr
    with review(dataset) as (first, url):
        assert first.startswith("capcheck review: 0 image(s) waiting"), first
        _, page = call(url, "GET", "/")
        assert "0 image(s) waiting for a person (13 more already ingested: marked done)" in page
        assert page.count('class="card settled"') == 13


def test_duplicates_of_one_image_are_two_cards_each_with_its_own_name_and_caption(dataset):
    proc = capcheck("route", dataset, "--aspects", "framing", "--all")
    assert proc.returncode == 0, proc.stderr
    with review(dataset) as (_, url):
        _, page = call(url, "GET", "/")
    by_path = {path: (name, caption) for path, name, caption in cards(page)}
    original = next(v for p, v in by_path.items() if p.endswith("/img003.png"))
    duplicate = next(v for p, v in by_path.items() if p.endswith("/img099.png"))
    assert original[0] == kohya.name(3) and duplicate[0] == "10_kanachan/img099.png"
    assert "glasses" in original[1] and "school swimsuit" in duplicate[1]
