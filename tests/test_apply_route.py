"""apply, undo and route at the library level: stale captions, dry runs,
borderline items, undo refusals, the route modes."""

import asyncio
import json
import os
import shutil

import pytest

from captions import build_dataset
from verifier.core.report import reports_dir, write_reports
from verifier.core.store import Store
from verifier.core.verify import VerifyOptions, verify_dataset
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults
from verifier.human.apply import CHANGED, SKIPPED, STALE, UndoRefused, apply_report, undo_run
from verifier.human.ingest import ingest
from verifier.human.route import route

from conftest import EXAMPLES

FOLDER = "02_clothed_pose/available"


@pytest.fixture
def verified(clothed47_dataset, keichan):
    """The 47 set verified once; 020000 borderline (model: cowboy shot), 020002 refused."""
    root = clothed47_dataset
    truth = json.loads((root / "truth.json").read_text())
    truth[f"{FOLDER}/020000.png"].update(borderline=["framing"], model={"framing": "cowboy shot"})
    (root / "truth.json").write_text(json.dumps(truth))
    model = DemoModel.load(root / "truth.json", root, keichan)
    faults = Faults(scripted={f"{FOLDER}/020002.png": ["refuse_filter"]})
    with DemoServer(model, faults) as server, Store(root) as store:
        run = asyncio.run(verify_dataset(root, keichan, VerifyOptions(model="demo", base_url=server.url), store))
        write_reports(root, run, keichan)  # what the CLI does after a run
    return root


def test_dry_run_writes_nothing_and_borderline_waits(verified, keichan):
    report = reports_dir(verified) / "latest.jsonl"
    snapshot = {p: p.read_bytes() for p in verified.rglob("*.txt")}
    with Store(verified) as store:
        done = apply_report(verified, keichan, report, store, dry_run=True)
        assert not store.journal()
    assert all(p.read_bytes() == b for p, b in snapshot.items())
    by = {d.image.rsplit("/", 1)[1]: d for d in done}
    assert by["020000.png"].status == SKIPPED and "borderline" in by["020000.png"].reason
    assert sum(d.status == CHANGED for d in done) == 24
    with Store(verified) as store:
        store.start_run("apply")
        done = apply_report(verified, keichan, report, store, include_borderline=True, aspects=["framing"])
    assert sum(d.status == CHANGED for d in done) == 23  # 22 liars + the borderline one; framing only
    assert "cowboy shot," in (verified / FOLDER / "020000.txt").read_text()


def test_a_caption_edited_after_verify_is_stale_and_untouched(verified, keichan):
    caption = verified / FOLDER / "020030.txt"
    caption.write_text(caption.read_text().replace("standing,", "standing, hand on hip,"))
    edited = caption.read_bytes()
    with Store(verified) as store:
        store.start_run("apply")
        done = apply_report(verified, keichan, reports_dir(verified) / "latest.jsonl", store)
    assert next(d for d in done if d.image.endswith("020030.png")).status == STALE
    assert caption.read_bytes() == edited


def test_undo_refuses_when_a_file_changed_since_and_can_undo_a_build(verified, keichan):
    with Store(verified) as store:
        store.start_run("apply")
        apply_report(verified, keichan, reports_dir(verified) / "latest.jsonl", store)
    caption = verified / FOLDER / "020021.txt"
    caption.write_text(caption.read_text() + "hand edit\n")
    snapshot = {p: p.read_bytes() for p in verified.rglob("*.txt")}
    with Store(verified) as store, pytest.raises(UndoRefused) as exc:
        undo_run(verified, store)
    assert "1 file(s) changed since run" in str(exc.value) and "020021.txt" in str(exc.value)
    assert all(p.read_bytes() == b for p, b in snapshot.items())  # all or nothing

    fresh = verified.parent / "fresh"
    (fresh / "a").mkdir(parents=True)
    for name in ("020104.png", "020104.json"):
        shutil.copy(EXAMPLES / "keichan" / "dataset" / FOLDER / name, fresh / "a" / name)
    with Store(fresh) as store:
        build_run = store.start_run("build")
        build_dataset(fresh, keichan, journal=store)
        assert (fresh / "a" / "020104.txt").exists()
        with pytest.raises(UndoRefused, match="--delete-created"):  # deleting is never the default
            undo_run(fresh, store)
        with pytest.raises(UndoRefused):
            undo_run(fresh, store, build_run)
        assert (fresh / "a" / "020104.txt").exists()
        done = undo_run(fresh, store, build_run, delete_created=True)
    assert done.kind == "build" and done.deleted == ["a/020104.txt"] and not done.restored
    assert not (fresh / "a" / "020104.txt").exists()  # the build had created it


def test_route_modes_unsure_and_a_second_route(verified, keichan):
    report = reports_dir(verified) / "latest.jsonl"
    with Store(verified) as store:
        store.start_run("route")
        linked = route(verified, keichan, report, "framing", store)
        again = route(verified, keichan, report, "framing", store)
    placed = {image.rsplit("/", 1)[1]: folder for image, folder, _ in linked.placed}
    assert placed == {"020000.png": "cowboy_shot", "020002.png": "_unsure"}  # borderline; refused
    assert again.placed == [] and sorted(again.already) == [f"{FOLDER}/020000.png", f"{FOLDER}/020002.png"]

    with Store(verified) as store:
        store.start_run("route")
        copied = route(verified, keichan, report, "framing", store, into=verified.parent / "copies", mode="copy",
                       everything=True)
    assert len(copied.placed) == 47
    dest = next(d for i, _, d in copied.placed if i.endswith("020000.png"))
    assert dest.read_bytes() == (verified / FOLDER / "020000.png").read_bytes()
    assert not os.path.samefile(dest, verified / FOLDER / "020000.png")

    with Store(verified) as store:
        store.start_run("route")
        moved = route(verified, keichan, report, "framing", store, into=verified.parent / "moved", mode="move")
    home = verified / FOLDER / "020000.png"
    assert not home.exists()  # moved out of the dataset
    away = next(d for i, _, d in moved.placed if i.endswith("020000.png"))
    away.rename(away.parent.parent / "full_body" / away.name)  # the person decides: feet are visible
    with Store(verified) as store:
        store.start_run("ingest")
        done = ingest(verified.parent / "moved", verified, keichan, "framing", store)
    assert home.exists() and done.unchanged == 1 and done.unsure == 1  # back home; 020002 still undecided
