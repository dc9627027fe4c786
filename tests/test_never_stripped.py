"""Issue 17: a character's trigger is never stripped, and apply edits only what was asked.

As a user runs it: a kohya folder with no policy (no `capcheck init`), no tag
CSV, `verify --aspects framing,tags` against the loopback demo server (real
HTTP, the openai SDK; every asked tag its truth file does not list is
"absent"), then `apply`. Old main asked about `kanachan` "by its Danbooru
meaning", got "absent" and removed the trigger from every caption."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

import kohya

ENV = {k: v for k, v in os.environ.items() if k != "CAPCHECK_TAGS_CSV"}  # most users have no tag CSV


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env=ENV)


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


def verify(root):
    with DemoServer(DemoModel.load(kohya.truth_file(root), root)) as server:
        return capcheck("verify", root, "--aspects", "framing,tags", "--model", "demo-vision", "--base-url",
                        server.url)


def report(root):
    return {x["image"]: x for x in map(json.loads, (root / ".capcheck/reports/latest.jsonl").read_text().splitlines())}


def texts(root):
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*.txt"))
            if "_review" not in p.parts}


def test_without_init_the_trigger_is_guessed_never_asked_and_never_removed(dataset):
    (dataset / "10_kanachan" / "img004.txt").write_text(
        "masterpiece, score_7, safe, kanachan, 1girl, solo, halo, glasses, long hair, blonde hair, blue eyes, dress, "
        "blue dress, closed mouth, full body\n")
    proc = verify(dataset)
    assert proc.returncode == 0, proc.stderr
    assert "the built-in generic policy" in proc.stderr
    lines = report(dataset)
    # The trigger is not asked in any image; the visual tags still are, with no tag CSV.
    assert all("kanachan" not in x["tags"]["checked"] and x["tags"]["not_asked"]["kanachan"] == "trigger"
               for x in lines.values())
    four = lines[kohya.name(4)]["tags"]
    assert four["checked"] == ["halo", "glasses", "long hair", "blonde hair", "blue eyes", "dress", "blue dress",
                               "closed mouth"]
    assert four["not_asked"] == {"masterpiece": "quality", "score_7": "quality", "safe": "rating",
                                 "kanachan": "trigger", "1girl": "count", "solo": "count"}
    assert "kanachan" not in lines[kohya.name(4)]["observation"]["tags"]
    # The summary says which tokens were not asked, and why, in the console and in tags.json.
    summary = [s for s in proc.stdout.splitlines() if s.startswith("tags not asked")]
    assert len(summary) == 1, proc.stdout
    assert "kanachan (trigger)" in summary[0] and "1girl, solo (count)" in summary[0]
    assert "in 12 of 12 captions" in summary[0] and "masterpiece, score_7 (quality)" in summary[0]
    rates = json.loads((dataset / ".capcheck/reports/latest.tags.json").read_text())
    assert rates["not_asked"]["trigger"]["tags"] == {"kanachan": 12}
    assert "no image shows it" in rates["not_asked"]["trigger"]["why"]

    before = texts(dataset)
    proc = capcheck("apply", dataset)
    assert proc.returncode == 0, proc.stderr
    after = texts(dataset)
    # Only the planted hallucinations (and img004's glasses) go; the trigger stays in every caption.
    assert {p for p in before if before[p] != after[p]} == {
        *(kohya.name(i).replace(".png", ".txt") for i in kohya.HALLUCINATED), "10_kanachan/img004.txt"}
    assert all("kanachan" in text.split(", ") for text in after.values())
    assert after["10_kanachan/img004.txt"] == before["10_kanachan/img004.txt"].replace("halo, glasses, ", "")


def test_an_old_report_that_refuted_the_trigger_removes_nothing(dataset):
    """A report written by an older capcheck (it asked about the trigger, the model said
    absent): apply checks each tag against what was asked and today's rules."""
    assert verify(dataset).returncode == 0
    path = dataset / ".capcheck/reports/latest.jsonl"
    planted = []
    for x in map(json.loads, path.read_text().splitlines()):
        if x["status"] == "ok" or not x["tags"]["mismatch"]:
            x["claims"]["tags"].insert(0, "kanachan")
            x["claims"]["tags"].insert(0, "1girl")
            x["tags"]["refuted"] += ["kanachan", "1girl"]
            x["fixes"] += [{"aspect": "tags", "caption": t, "image": "absent", "borderline": False}
                           for t in ("kanachan", "1girl")]
            x["status"] = "fix"
        planted.append(json.dumps(x))
    path.write_text("\n".join(planted) + "\n")
    before = texts(dataset)
    proc = capcheck("apply", dataset)
    assert proc.returncode == 0, proc.stderr
    after = texts(dataset)
    assert {p for p in before if before[p] != after[p]} == {kohya.name(i).replace(".png", ".txt")
                                                           for i in kohya.HALLUCINATED}
    assert all(t.startswith("kanachan, 1girl, solo, ") for t in after.values())
    assert "kanachan kept: never asked as a visual tag (trigger)" in proc.stderr
    assert "1girl kept: never asked as a visual tag (count)" in proc.stderr
    # Nor does route offer them to a person as `removed/` (ingest would take them out).
    proc = capcheck("route", dataset, "--aspects", "tags", "--all")
    assert proc.returncode == 0, proc.stderr
    routed = {p.name for p in (dataset / "_review" / "tags").iterdir()}
    assert "kanachan" not in routed and "1girl" not in routed and "glasses" in routed


def test_a_mismatched_image_is_never_edited_not_even_its_framing(dataset):
    # img001 carries img000's caption (the swap); its framing claim is now wrong as well.
    swapped = dataset / kohya.name(kohya.NUDE).replace(".png", ".txt")
    swapped.write_text(swapped.read_text().replace("full body", "cowboy shot"))
    assert verify(dataset).returncode == 0
    line = report(dataset)[kohya.name(kohya.NUDE)]
    assert line["tags"]["mismatch"] and any(f["aspect"] == "framing" for f in line["fixes"])
    before = swapped.read_bytes()
    proc = capcheck("apply", dataset, "--include-borderline")
    assert proc.returncode == 0, proc.stderr
    assert swapped.read_bytes() == before
    assert kohya.name(kohya.NUDE) not in proc.stdout.split("capcheck apply:")[0]  # no diff printed for it
