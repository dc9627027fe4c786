"""The human loop end to end, through the CLI: verify -> apply -> route ->
a person sorts -> ingest -> undo -> agreement (issue 4's done-when)."""

import json
import re
import shlex
import subprocess
import sys

import pytest

from captions import facts_from_caption, load_policy, parse
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
FOLDER = "02_clothed_pose/available"


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def captions(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted((root / FOLDER).glob("*.txt"))}


def plant(root):
    """Borderline calls where the model and the person part ways (the article's
    strict Danbooru judgement vs the eye): the model sees cowboy shots in two
    full-body images and a full body in a cowboy shot; one real liar is borderline."""
    truth_file = root / "truth.json"
    truth = json.loads(truth_file.read_text())
    for name, says in (("020000", "cowboy shot"), ("020005", "cowboy shot"), ("020043", "full body"),
                       ("020030", None)):
        entry = truth[f"{FOLDER}/{name}.png"]
        entry["borderline"] = ["framing"]
        if says:
            entry["model"] = {"framing": says}
    truth_file.write_text(json.dumps(truth))
    return truth


def test_verify_apply_route_sort_ingest_undo_agreement(clothed47_dataset, keichan):
    root = clothed47_dataset
    truth = plant(root)
    model = DemoModel.load(root / "truth.json", root, keichan)
    with DemoServer(model) as server:
        proc = capcheck("verify", root, "--policy", POLICY, "--model", "demo", "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    assert "fix 27" in proc.stdout  # 24 planted fix images + 020000, 020005, 020043 (borderline)
    before_apply = captions(root)

    proc = capcheck("apply", root)  # the policy comes from the verify run
    assert proc.returncode == 0, proc.stderr
    assert "changed 23, unchanged 0, stale 0, borderline left for a person 4, missing 0" in proc.stdout
    assert "+smile, gym uniform, standing, from behind, cowboy shot," not in proc.stdout  # diffs are real diffs
    assert re.search(r"^-.*full body,$", proc.stdout, re.M) and re.search(r"^\+.*cowboy shot,$", proc.stdout, re.M)
    after_apply = captions(root)
    touched = {k for k in after_apply if after_apply[k] != before_apply[k]}
    assert len(touched) == 23
    for k in touched:  # only the lines the facts control changed
        old, new = before_apply[k].decode().split("\n"), after_apply[k].decode().split("\n")
        assert old[0] == new[0] and old[1] == new[1] and old[3] == new[3] and old[-2:] == new[-2:]

    proc = capcheck("route", root, "--aspect", "framing")
    assert proc.returncode == 0, proc.stderr
    review = root / "_review" / "framing"
    placed = {p.name: sorted(x.name for x in p.iterdir()) for p in review.iterdir() if any(p.iterdir())}
    assert placed == {"cowboy_shot": ["020000.png", "020005.png", "020030.png"], "full_body": ["020043.png"]}
    assert sorted(p.name for p in review.iterdir()) == ["_unsure", "cowboy_shot", "full_body", "portrait", "upper_body"]
    assert (review / "cowboy_shot" / "020000.png").stat().st_ino == (root / FOLDER / "020000.png").stat().st_ino
    assert f"capcheck ingest {shlex.quote(str(root / '_review'))} --aspects framing" in proc.stdout  # pastes as is

    # A person looks and moves files: two "cowboy shots" show the feet, one "full body" does not.
    for name, value in (("020000.png", "full_body"), ("020005.png", "full_body"), ("020043.png", "cowboy_shot")):
        found = next(review.glob(f"*/{name}"))
        found.rename(review / value / name)

    proc = capcheck("ingest", root / "_review", "--aspect", "framing")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed 1, unchanged 3" in proc.stdout and "full body -> cowboy shot" in proc.stdout
    for path, facts in truth.items():  # every framing tag now matches what the image shows
        text = (root / path).with_suffix(".txt").read_text()
        assert facts_from_caption(parse(text), keichan).framing == facts["framing"], path
    assert capcheck("ingest", root / "_review", "--aspect", "framing").stdout.startswith("capcheck ingest: changed 0")
    latest = (root / ".capcheck" / "reports" / "latest.html").read_text()  # rendered again by ingest
    assert latest.count('data-status="settled"') == 4  # the person's answers, not the model's stale borderline fixes

    proc = capcheck("agreement", root)
    assert proc.returncode == 0, proc.stderr
    assert "framing: 4 images · accuracy 25.0% · Cohen's kappa -0.500 · 3 disagreement(s)" in proc.stdout
    for name, person, machine in (("020000", "full body", "cowboy shot"), ("020005", "full body", "cowboy shot"),
                                  ("020043", "cowboy shot", "full body")):
        assert f"{FOLDER}/{name}.png: person {person}, model {machine}" in proc.stdout
    saved = json.loads((root / ".capcheck" / "reports" / "agreement.json").read_text())
    assert saved[0]["matrix"] == [[1, 1], [2, 0]] and saved[0]["labels"] == ["cowboy shot", "full body"]

    apply_run = next(r["id"] for r in _runs(root) if r["kind"] == "apply")
    proc = capcheck("undo", root, "--run", apply_run)
    assert proc.returncode == 0, proc.stderr
    assert f"run {apply_run} (apply): restored 23 caption(s), deleted 0" in proc.stdout
    now = captions(root)
    assert all(now[k] == before_apply[k] for k in touched)  # every byte back
    assert now[f"{FOLDER}/020030.txt"] != before_apply[f"{FOLDER}/020030.txt"]  # ingest's change is not apply's
    proc = capcheck("undo", root, "--run", apply_run)
    assert proc.returncode == 2 and "already undone" in proc.stderr


def _runs(root):
    import sqlite3

    db = sqlite3.connect(root / ".capcheck" / "capcheck.db")
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM runs ORDER BY id").fetchall()


def test_the_articles_in_place_sort_gives_exactly_22_changes(clothed47_dataset):
    root = clothed47_dataset
    truth = json.loads((root / "truth.json").read_text())
    (root / ".capcheck").mkdir()
    available = root / FOLDER
    for path, facts in truth.items():  # sorted by eye, each image with its .txt and .json
        image = root / path
        target = available / facts["framing"].replace(" ", "_")
        target.mkdir(exist_ok=True)
        for suffix in (".png", ".txt", ".json"):
            image.with_suffix(suffix).rename(target / image.with_suffix(suffix).name)
    counts = {d.name: len(list(d.glob("*.png"))) for d in available.iterdir()}
    assert counts == {"full_body": 21, "cowboy_shot": 24, "upper_body": 2}
    proc = capcheck("ingest", available, "--aspect", "framing", "--policy", POLICY)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "changed 22, unchanged 25" in proc.stdout
    assert re.search(r"full body -> cowboy shot\s*│\s*× 22", proc.stdout)
    proc = capcheck("ingest", available, "--aspect", "framing", "--policy", POLICY)
    assert "changed 0, unchanged 47" in proc.stdout
    for caption in (available / "cowboy_shot").glob("*.txt"):
        assert facts_from_caption(parse(caption.read_text()), load_policy(POLICY)).framing == "cowboy shot"


@pytest.fixture
def sorted_in_place(clothed47_dataset):
    root = clothed47_dataset
    (root / ".capcheck").mkdir()
    available = root / FOLDER
    for name, folder in (("020021", "Cowboy_Shot"), ("020022", "cowboy shot"), ("020001", "knee_shot")):
        (available / folder).mkdir(exist_ok=True)
        for suffix in (".png", ".txt", ".json"):
            (available / f"{name}{suffix}").rename(available / folder / f"{name}{suffix}")
    return root


def test_ingest_edge_cases(sorted_in_place):
    root = sorted_in_place
    available = root / FOLDER
    before = (available / "knee_shot" / "020001.txt").read_bytes()
    proc = capcheck("ingest", available, "--aspect", "framing", "--policy", POLICY)
    assert proc.returncode == 1  # done, but something needs attention
    assert "changed 2, unchanged 0" in proc.stdout  # case and spelling of folder names do not matter
    assert "not a value of framing: knee_shot/ (1 image(s) left alone)" in proc.stdout
    assert (available / "knee_shot" / "020001.txt").read_bytes() == before  # not guessed
    (available / "cowboy shot" / "020022.txt").unlink()
    (available / "full_body").mkdir()
    (available / "Cowboy_Shot" / "020021.txt").rename(available / "full_body" / "020021.txt")
    (available / "Cowboy_Shot" / "020021.png").rename(available / "full_body" / "020021.png")
    proc = capcheck("ingest", available, "--aspect", "framing", "--policy", POLICY)
    assert f"no caption next to {FOLDER}/cowboy shot/020022.png (move its .txt with it)" in proc.stdout
    assert "changed 1" in proc.stdout  # 020021 went back to full body


def test_an_image_in_two_value_folders_stops_everything(sorted_in_place):
    import shutil

    root = sorted_in_place
    available = root / FOLDER
    (available / "full_body").mkdir()
    for suffix in (".png", ".txt"):
        shutil.copy(available / "Cowboy_Shot" / f"020021{suffix}", available / "full_body" / f"020021{suffix}")
    snapshot = {p: p.read_bytes() for p in root.rglob("*.txt")}
    proc = capcheck("ingest", available, "--aspect", "framing", "--policy", POLICY)
    assert proc.returncode == 2
    assert "the same image is sorted into two values, nothing written: 020021.png in cowboy shot, full body" in proc.stderr
    assert all(p.read_bytes() == b for p, b in snapshot.items())
