"""Issue 12, as a user runs it: a kohya folder with no policy and no sidecars,
`capcheck init`, then `verify --aspects framing,tags` against the loopback
server (real HTTP, the openai SDK) answering from ground truth."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults

import kohya

SWAPPED = {kohya.name(kohya.BIKINI), kohya.name(kohya.NUDE)}


def capcheck(*args, env=None):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    root = tmp_path_factory.mktemp("kohya") / "kanachan"
    kohya.make(root)
    return root


@pytest.fixture
def dataset(tmp_path, master):
    dest = tmp_path / "kanachan"
    shutil.copytree(master, dest)
    shutil.copyfile(kohya.truth_file(master), kohya.truth_file(dest))
    return dest


def verify(root, faults=None, *extra):
    model = DemoModel.load(kohya.truth_file(root), root)
    with DemoServer(model, faults) as server:
        return capcheck("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url",
                        server.url, *extra)


def report(root):
    return {x["image"]: x for x in map(json.loads, (root / ".capcheck/reports/latest.jsonl").read_text().splitlines())}


def texts(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.txt"))
            if "_review" not in p.parts}


def test_init_then_verify_finds_every_planted_tag_and_the_swap(dataset):
    proc = capcheck("init", dataset)
    assert proc.returncode == 0, proc.stderr
    assert "trigger: kanachan" in proc.stdout
    assert (dataset / ".capcheck" / "policy.yaml").is_file()

    proc = verify(dataset)
    assert proc.returncode == 0, proc.stderr
    assert ".capcheck/policy.yaml (the dataset's own)" in proc.stderr
    lines = report(dataset)
    assert len(lines) == 12
    # Every planted hallucination is refuted, and nothing else outside the swapped pair.
    refuted = {(image, t) for image, x in lines.items() if image not in SWAPPED for t in x["tags"]["refuted"]}
    assert refuted == {(kohya.name(i), tag) for i, tag in kohya.HALLUCINATED.items()}
    # The trigger is never asked about; the framing tag is the framing aspect's, not a tag question.
    assert all("kanachan" not in x["tags"]["checked"] and "full body" not in x["tags"]["checked"]
               for x in lines.values())
    # The swap: both mismatched, each naming the other.
    bikini, nude = kohya.name(kohya.BIKINI), kohya.name(kohya.NUDE)
    assert lines[bikini]["tags"]["mismatch"] and lines[bikini]["tags"]["likely_swap"] == nude
    assert lines[nude]["tags"]["likely_swap"] == bikini
    assert [i for i, x in lines.items() if x["tags"]["mismatch"]] == sorted(SWAPPED)
    assert f"likely swap: {bikini} <-> {nude}" in proc.stdout
    # The probes: a bikini image is asked about nude, and the reverse.
    assert "nude" in lines[bikini]["observation"]["tags"] and "bikini" in lines[nude]["observation"]["tags"]
    assert re.search(r"tags: probe yes-rate \d+% .* disagreement rate \d+%", proc.stdout)
    rates = json.loads((dataset / ".capcheck/reports/latest.tags.json").read_text())
    assert rates["probe_yes_rate"] < 0.2 and rates["likely_swaps"] == [[bikini, nude]]
    page = (dataset / ".capcheck/reports/latest.html").read_text()
    assert "<del>glasses</del>" in page and "likely swap with" in page and "probe yes-rate" in page

    # route: both swapped images go to a person.
    proc = capcheck("route", dataset, "--aspects", "tags")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dataset / "_review/tags/mismatch").iterdir()) == ["img000.png", "img001.png"]

    # apply removes only the refuted tags; every other byte stays; undo is exact.
    before = texts(dataset)
    proc = capcheck("apply", dataset)
    assert proc.returncode == 0, proc.stderr
    after = texts(dataset)
    changed = {p for p in before if before[p] != after[p]}
    assert changed == {kohya.name(i).replace(".png", ".txt") for i in kohya.HALLUCINATED}
    for i, tag in kohya.HALLUCINATED.items():
        path = kohya.name(i).replace(".png", ".txt")
        assert after[path] == before[path].replace(f"{tag}, ".encode(), b"")
    proc = capcheck("undo", dataset)
    assert proc.returncode == 0, proc.stderr
    assert texts(dataset) == before

    # After apply, a re-verify asks nothing: the stored answers cover the new captions.
    capcheck("apply", dataset)
    proc = verify(dataset)
    assert "12 images · 0 asked, 12 from the store" in proc.stdout


def test_yes_sayer_shows_in_the_summary(dataset):
    capcheck("init", dataset)
    proc = verify(dataset, Faults(yes_sayer=True))
    assert proc.returncode == 0, proc.stderr
    assert "tags: probe yes-rate 100% (48 of 48 probes called present)" in proc.stdout
    assert "disagreement rate 0%" in proc.stdout


def test_tags_need_the_observe_protocol(dataset):
    proc = capcheck("verify", dataset, "--aspects", "framing,tags", "--protocol", "fixline", "--model", "m",
                    "--base-url", "http://127.0.0.1:9")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: the tags audit needs the observe protocol (JSON answers); drop 'tags' from --aspects or use "
        "--protocol observe")


def test_person_answers_per_tag_win_and_agreement_counts_them(dataset):
    capcheck("init", dataset)
    verify(dataset, None, "--only", "img003.png", "--only", "img010.png")
    proc = capcheck("route", dataset, "--aspects", "tags", "--all")
    assert proc.returncode == 0, proc.stderr
    review = dataset / "_review" / "tags"
    assert (review / "glasses" / "removed" / "img003.png").exists()
    # The person sees a brown jacket after all: kept. Glasses stay removed.
    shutil.move(review / "brown_jacket" / "removed" / "img010.png", review / "brown_jacket" / "kept" / "img010.png")
    before = texts(dataset)
    proc = capcheck("ingest", dataset / "_review", "--aspects", "tags")
    assert proc.returncode == 0, proc.stderr
    after = texts(dataset)
    glasses = kohya.name(3).replace(".png", ".txt")
    assert after[glasses] == before[glasses].replace(b"glasses, ", b"")
    assert {p for p in before if before[p] != after[p]} == {glasses}
    # apply leaves the kept tag alone: the person's answer wins.
    proc = capcheck("apply", dataset)
    assert texts(dataset) == after, proc.stdout
    # ...and the training gate takes both answers as settled.
    from captions.generic import choose_policy
    from verifier.core.store import Store
    from verifier.human import gate

    with Store(dataset) as store:
        checked = gate.check(dataset, store, choose_policy(None, dataset).policy)
    assert checked.passed[kohya.name(3)] == checked.passed[kohya.name(10)] == gate.INGESTED
    proc = capcheck("agreement", dataset)
    assert proc.returncode == 0, proc.stderr
    assert "tag:brown jacket: 1 images · accuracy 0.0%" in proc.stdout
    assert "tag:glasses: 1 images · accuracy 100.0%" in proc.stdout


def test_one_bad_caption_is_reported_alone(tmp_path):
    root = tmp_path / "fifty"
    kohya.make(root, n=50)
    (root / kohya.name(5)).with_suffix(".txt").write_bytes(b"kanachan, 1girl, \xff\xfe broken\n")
    (root / kohya.name(6)).with_suffix(".txt").write_text("  \n")
    proc = verify(root)
    assert proc.returncode == 1, proc.stderr
    assert "capcheck verify: 48 images · 48 asked" in proc.stdout
    assert (f"skipped {kohya.name(5)}: unreadable caption: not valid UTF-8 (byte 0xff at offset 17); re-save the "
            "caption as UTF-8") in proc.stdout
    assert f"skipped {kohya.name(6)}: unreadable caption: the caption is empty" in proc.stdout
    assert len(report(root)) == 48


def test_init_guesses_kanachan_on_the_old_one_line_captions(tmp_path):
    from PIL import Image

    root = tmp_path / "old"
    root.mkdir()
    lines = ["kanachan, 1girl, solo, angry, portrait, front view, white background",
             "kanachan, 1girl, solo, smile, upper body, three quarter view, white background",
             "kanachan, 1girl, solo, frown, cowboy shot, from behind, white background",
             "kanachan, 1girl, solo, surprised, full body, profile, white background"]
    for i, text in enumerate(lines):
        Image.new("RGB", (8, 8)).save(root / f"{i}.png")
        (root / f"{i}.txt").write_text(text + "\n")
    out = tmp_path / "starter.yaml"
    proc = capcheck("init", root, "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^trigger: kanachan$", out.read_text(), re.M)
    assert not (root / ".capcheck" / "policy.yaml").exists()
    proc = capcheck("init", root, "-o", out)
    assert proc.returncode == 2 and "already exists" in proc.stderr
    # Written where commands look for it, lint and verify use it without --policy.
    assert capcheck("init", root).returncode == 0
    (root / "9.txt").write_text("1girl, solo, smile, portrait\n")
    Image.new("RGB", (8, 8)).save(root / "9.png")
    proc = capcheck("lint", root)
    assert "the dataset's own" in proc.stderr and "9.txt: missing-trigger" in proc.stdout


def test_caption_files_and_a_bom_as_kohya_users_have_them(dataset):
    # `.caption` files written by a Windows editor (UTF-8 with a BOM), CRLF line ends.
    for txt in dataset.rglob("*.txt"):
        txt.with_suffix(".caption").write_bytes(b"\xef\xbb\xbf" + txt.read_bytes().replace(b"\n", b"\r\n"))
        txt.unlink()
    assert capcheck("init", dataset).returncode == 0
    proc = verify(dataset, None, "--caption-ext", ".caption")
    assert proc.returncode == 0, proc.stderr
    assert report(dataset)[kohya.name(3)]["tags"]["refuted"] == ["glasses"]
    before = {p: p.read_bytes() for p in dataset.rglob("*.caption")}
    proc = capcheck("apply", dataset)
    assert proc.returncode == 0, proc.stderr
    changed = {p: p.read_bytes() for p in dataset.rglob("*.caption") if p.read_bytes() != before[p]}
    assert len(changed) == 3 and not list(dataset.rglob("*.txt"))
    glasses = dataset / kohya.name(3).replace(".png", ".caption")
    assert changed[glasses] == before[glasses].replace(b"glasses, ", b"")
    assert changed[glasses].startswith(b"\xef\xbb\xbfkanachan, 1girl") and changed[glasses].endswith(b"\r\n")
