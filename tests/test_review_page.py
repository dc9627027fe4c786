"""`capcheck review`: the review folders as a page, in a real Chromium.

The done-when of issue 11: route two images, open the page, sort both with
the keyboard, run ingest from the page, and the captions change on disk.
Around it, what a faster pair of hands must not break: the folders stay the
truth (a move in Finder shows on reload), the files beside an image move
with it, nothing outside the review folder is reachable, and every refusal
is one line.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from captions import facts_from_caption, parse
from verifier.core.store import Store
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer
from verifier.errors import VerifierError
from verifier.human.review import ReviewTree
from verifier.human.review_page import ReviewServer, render

from browser import browser, page  # noqa: F401  (fixtures)
from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
FOLDER = "02_clothed_pose/available"
SHOTS = Path(os.environ.get("CAPCHECK_SCREENSHOTS", "")) if os.environ.get("CAPCHECK_SCREENSHOTS") else None


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def framing(root: Path, image: str, policy) -> str:
    return facts_from_caption(parse((root / image).with_suffix(".txt").read_text()), policy).framing


@pytest.fixture(scope="module")
def verified(tmp_path_factory, clothed47_master, keichan):
    """The 47 set verified once for this module. Two captions lie (full body;
    the image is a cowboy shot) and the model, borderline, calls them full body too."""
    root = tmp_path_factory.mktemp("verified") / "clothed 47 データ"
    shutil.copytree(clothed47_master, root)
    truth = json.loads((root / "truth.json").read_text())
    liars = [p for p, facts in truth.items() if facts["framing"] == "cowboy shot"
             and framing(root, p, keichan) == "full body"][:2]
    for path in liars:
        truth[path].update(borderline=["framing"], model={"framing": "full body"})
    (root / "truth.json").write_text(json.dumps(truth))
    with DemoServer(DemoModel.load(root / "truth.json", root, keichan)) as server:
        proc = capcheck("verify", root, "--policy", POLICY, "--model", "demo", "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    return root, liars


@pytest.fixture
def routed(verified, tmp_path):
    """A private copy of the verified set, routed: both liars in full_body/."""
    master, liars = verified
    root = tmp_path / master.name
    shutil.copytree(master, root)
    proc = capcheck("route", root, "--aspects", "framing")
    assert proc.returncode == 0, proc.stderr
    assert f"or sort them in the browser, which runs ingest for you: capcheck review '{root}'" in proc.stdout  # quoted
    placed = sorted(p.relative_to(root / "_review").as_posix() for p in (root / "_review").rglob("*.png"))
    assert placed == sorted(f"framing/full_body/{Path(p).name}" for p in liars)
    return root, liars


@pytest.fixture
def served(routed):
    """`capcheck review` as a user starts it; yields (url, root, liars)."""
    root, liars = routed
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", "review", str(root), "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        url = proc.stdout.readline().split()[1] if first else ""
        assert first.startswith("capcheck review: 2 image(s) waiting in"), first + proc.stderr.read()
        assert url.startswith("http://127.0.0.1:")
        yield url, root, liars
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sort_two_with_the_keyboard_and_ingest_from_the_page(served, keichan, page):  # noqa: F811
    url, root, liars = served
    before = {p: (root / p).with_suffix(".txt").read_bytes() for p in liars}
    page.goto(url)
    assert page.locator(".card").count() == 2 and page.text_content("section h2") == "framing · 2 image(s)"
    first = page.locator(".card").nth(0)
    assert "caption says full body" in " ".join(first.locator("dl").inner_text().split())
    assert "model full body (borderline)" in " ".join(first.locator("dl").inner_text().split())
    assert first.get_attribute("class") == "card current"  # the first image is selected
    assert page.eval_on_selector_all("img", "imgs => imgs.every(i => i.complete && i.naturalWidth > 0)")
    if SHOTS:
        page.screenshot(path=str(SHOTS / "review-before.png"), full_page=True)
    key = page.get_attribute('.card.current button[data-to="cowboy_shot"]', "data-key")
    assert key == "3"
    page.keyboard.press(key)
    page.keyboard.press(key)  # the selection moved on to the second image
    page.wait_for_function("document.querySelectorAll('.card.sorted').length === 2")
    moved = sorted(p.relative_to(root / "_review").as_posix() for p in (root / "_review").rglob("*.png"))
    assert moved == sorted(f"framing/cowboy_shot/{Path(p).name}" for p in liars)  # moved on disk, as in Finder
    assert all((root / p).with_suffix(".txt").read_bytes() == before[p] for p in liars)  # nothing ingested yet
    assert page.eval_on_selector_all('.card button[aria-pressed="true"]', "bs => bs.map(b => b.dataset.to)") == [
        "cowboy_shot", "cowboy_shot"]

    page.click("#ingest")
    page.wait_for_function("document.getElementById('result').textContent.startsWith('framing:')")
    assert page.text_content("#result").splitlines() == ["framing: changed 2, unchanged 0",
                                                         "  full body -> cowboy shot × 2"]
    says = page.eval_on_selector_all(".card dl dd:first-of-type", "ds => ds.map(d => d.textContent)")
    assert says == ["cowboy shot", "cowboy shot"]  # the page read the folders and captions again
    if SHOTS:
        page.screenshot(path=str(SHOTS / "review-after.png"), full_page=True)
    for p in liars:  # the captions changed on disk, that one fact only
        assert framing(root, p, keichan) == "cowboy shot"
        assert (root / p).with_suffix(".txt").read_bytes() != before[p]
    with Store(root) as store:  # recorded as ingest records it: the person's answers, a journal to undo
        assert {r["value"] for r in store.human("framing")} == {"cowboy shot"}
        assert store.latest_run("ingest") is not None and len(store.journal(store.latest_run("ingest")["id"])) == 2


def test_the_folders_stay_the_truth(served, page):  # noqa: F811
    url, root, liars = served
    page.goto(url)
    name = Path(liars[1]).name
    review = root / "_review" / "framing"
    (review / "full_body" / name).rename(review / "upper_body" / name)  # a person moves it in Finder
    page.reload()
    pressed = page.eval_on_selector_all('.card button[aria-pressed="true"]', "bs => bs.map(b => b.dataset.to)")
    assert sorted(pressed) == ["full_body", "upper_body"]
    page.click(f'.card:has-text("{name}") button[data-to="_unsure"]')  # a click, too
    page.wait_for_function("document.querySelectorAll('.card.sorted').length === 1")
    assert (review / "_unsure" / name).exists() and not (review / "upper_body" / name).exists()
    (review / "_unsure" / name).unlink()  # gone behind the page's back: one line, no traceback
    page.keyboard.press("ArrowRight")
    page.keyboard.press("4")
    page.wait_for_function("document.getElementById('status').className === 'bad'")
    assert page.text_content("#status") == (f"framing/_unsure/{name}: no such image (moved or renamed since the "
                                            f"page was loaded: reload)")


def _request(url, method, path, body=None, headers=None, raw=None):
    host, port = url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    data = raw if raw is not None else json.dumps(body).encode() if body is not None else None
    sent = {"Content-Type": "application/json"} if data is not None else {}
    conn.request(method, path, data, {**sent, **(headers or {})})
    answer = conn.getresponse()
    return answer.status, answer.read()


@pytest.fixture
def server(routed, keichan):
    root, liars = routed
    with ReviewServer(ReviewTree(root, keichan)) as running:
        yield running, root, liars


def test_nothing_outside_the_review_folder_is_reachable(server, tmp_path):
    running, root, liars = server
    url = running.url
    secret = root / "secret.png"
    secret.write_bytes(b"not yours")
    name = Path(liars[0]).name
    for path in ("/image/../secret.png", "/image/%2e%2e/%2e%2e/secret.png", "/image/framing/..%2F..%2Fsecret.png",
                 f"/image/{quote(str(secret))}", "/image/framing/full_body/../../../secret.png"):
        status, body = _request(url, "GET", path)
        assert status == 404 and b"not yours" not in body, path
        assert "\n" not in json.loads(body)["error"]
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"x")
    for path in ("../secret.png", str(outside), "framing/full_body/../../../secret.png", "framing/full_body"):
        status, body = _request(url, "POST", "/move", {"path": path, "to": "cowboy_shot"})
        assert status == 400, path
    assert json.loads(body)["error"] == "framing/full_body: not an image in the review folder (ASPECT/VALUE/IMAGE)"
    assert secret.read_bytes() == b"not yours" and outside.exists()
    status, body = _request(url, "POST", "/move", {"path": f"framing/full_body/{name}", "to": "../../evil"})
    assert status == 400 and json.loads(body)["error"] == (
        "../../evil: not a value of framing (one of: portrait, upper body, cowboy shot, full body, _unsure)")
    assert (root / "_review" / "framing" / "full_body" / name).exists() and not (root / "evil").exists()
    status, body = _request(url, "GET", f"/image/framing/full_body/{name}")
    assert status == 200 and body == (root / liars[0]).read_bytes()


def test_only_this_machines_pages_may_use_it(server):
    running, root, liars = server
    url = running.url
    name = Path(liars[0]).name
    move = {"path": f"framing/full_body/{name}", "to": "cowboy_shot"}
    status, _ = _request(url, "GET", "/", headers={"Host": "evil.example:80"})  # DNS rebinding
    assert status == 403
    status, _ = _request(url, "POST", "/move", move, headers={"Origin": "http://evil.example"})
    assert status == 403
    status, _ = _request(url, "POST", "/move", None, headers={"Content-Type": "text/plain"})  # a cross-site form
    assert status == 415
    status, body = _request(url, "POST", "/move", raw=b"{oops")  # a broken body: one line, never a traceback
    assert status == 400 and json.loads(body)["error"].startswith("the request is not JSON (Expecting")
    status, body = _request(url, "POST", "/move", ["a list"])
    assert status == 400 and json.loads(body)["error"] == "the request is not a JSON object"
    assert (root / "_review" / "framing" / "full_body" / name).exists()
    status, body = _request(url, "POST", "/move", move, headers={"Origin": url.rstrip("/")})
    assert status == 200 and json.loads(body)["path"] == f"framing/cowboy_shot/{name}"
    port = url.rstrip("/").rsplit(":", 1)[1]
    back = {"path": f"framing/cowboy_shot/{name}", "to": "full body"}  # the page opened as localhost works too
    status, _ = _request(url, "POST", "/move", back, headers={"Host": f"localhost:{port}",
                                                              "Origin": f"http://localhost:{port}"})
    assert status == 200 and (root / "_review" / "framing" / "full_body" / name).exists()
    assert running.server_address[0] == "127.0.0.1"


def test_a_move_takes_the_files_beside_the_image_and_never_overwrites(routed, keichan):
    root, liars = routed
    tree = ReviewTree(root, keichan)
    review = root / "_review" / "framing"
    a, b = (Path(p).name for p in liars)
    stem = Path(a).stem
    (review / "full_body" / f"{stem}.txt").write_text("beside it")
    (review / "cowboy_shot" / a).write_bytes(b"another picture of that name")
    new = tree.move(f"framing/full_body/{a}", "Cowboy Shot")  # any spelling of the value
    assert new == f"framing/cowboy_shot/{stem}__2.png"
    assert (review / "cowboy_shot" / f"{stem}__2.txt").read_text() == "beside it"
    assert (review / "cowboy_shot" / a).read_bytes() == b"another picture of that name"
    assert not list((review / "full_body").glob(f"{stem}*"))
    shutil.copy(review / "full_body" / b, review / "upper_body" / b)
    with pytest.raises(VerifierError, match="this image is already in that folder"):
        tree.move(f"framing/full_body/{b}", "upper_body")
    assert (review / "full_body" / b).exists() and (review / "upper_body" / b).exists()
    (review / "upper_body" / b).unlink()
    (review / "full_body" / b).rename(review / "portrait" / b)
    (review / "full_body").rmdir()
    (review / "Full Body").mkdir()  # a folder a person made with their own spelling is used as it is
    assert tree.move(f"framing/portrait/{b}", "full body") == f"framing/Full Body/{b}"


def test_review_without_a_routed_folder_is_one_line(clothed47_dataset, tmp_path):
    proc = capcheck("review", clothed47_dataset, "--no-open", "--policy", POLICY)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [  # which policy (every command says it), then the one error line
        f"policy: {POLICY} (--policy)",
        f"error: {clothed47_dataset / '_review'}: nothing routed for a person here: run `capcheck route DATASET "
        "--aspects ASPECT` (or `--losses`) first"]
    (tmp_path / "elsewhere" / "framing").mkdir(parents=True)
    with socket.socket() as taken:  # a port another program holds
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = capcheck("review", clothed47_dataset, "--no-open", "--into", tmp_path / "elsewhere", "--port", port)
        # no policy given, kept with the dataset or used by a verify: the generic one, up to the port
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines()[-1] == f"error: 127.0.0.1:{port}: cannot listen: Address already in use"
        proc = capcheck("review", clothed47_dataset, "--no-open", "--into", tmp_path / "elsewhere", "--port", port,
                        "--policy", POLICY)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"policy: {POLICY} (--policy)", f"error: 127.0.0.1:{port}: cannot listen: Address already in use"]


def test_originals_routed_by_move_go_home_when_the_page_ingests(routed, keichan):
    root, liars = routed
    shutil.rmtree(root / "_review")
    proc = capcheck("route", root, "--aspects", "framing", "--mode", "move")
    assert proc.returncode == 0, proc.stderr
    assert not any((root / p).exists() for p in liars)  # the originals are in the review folder now
    tree = ReviewTree(root, keichan)
    for p in liars:
        assert tree.move(f"framing/full_body/{Path(p).name}", "cowboy shot") == f"framing/cowboy_shot/{Path(p).name}"
    done = tree.ingest_all()
    assert [(aspect, d.changed_count, d.unchanged) for aspect, d in done] == [("framing", 2, 0)]
    for p in liars:  # home again, captions rewritten; nothing left behind, nothing lost
        assert (root / p).exists() and framing(root, p, keichan) == "cowboy shot"
    assert not list((root / "_review").rglob("*.png")) and tree.cards() == {"framing": []}


def test_what_ingest_leaves_for_attention_is_said_on_the_page(routed, keichan):
    root, liars = routed
    review = root / "_review" / "framing"
    a, b = (Path(p).name for p in liars)
    (review / "knee_shot").mkdir()  # a folder a person made that is no value
    (review / "full_body" / a).rename(review / "knee_shot" / a)
    tree = ReviewTree(root, keichan)
    tree.move(f"framing/full_body/{b}", "_unsure")
    html = render(tree)
    assert "in knee_shot/, which is not a value of framing" in html
    [(aspect, done)] = tree.ingest_all()
    assert done.summary(aspect) == ["framing: changed 0, unchanged 0",
                                    "not a value of framing: knee_shot/ (1 image(s) left alone)",
                                    "still in _unsure/: 1 (move them to a value folder to decide)"]
    assert all(framing(root, p, keichan) == "full body" for p in liars)  # nothing guessed
