"""Images as they are, or named: `capcheck verify` over real odd files (a subprocess, the loopback demo server).

16-bit grey, animations, pictures that are not images of the dataset, a
decompression bomb, links that loop, dangle or leave the dataset: each
arrives as a person sees it or is one named line, and the rest run.
"""

import json
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from captions import build_dataset
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults

from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
TRUTH = EXAMPLES / "keichan" / "truth.json"
SWIMSUIT = "02_clothed_pose/available/020101.png"  # a "full body" the truth calls a cowboy shot


@pytest.fixture
def dataset(example_dataset, keichan):
    build_dataset(example_dataset, keichan)
    return example_dataset


@pytest.fixture
def model(dataset, keichan):
    return DemoModel.load(TRUTH, dataset, keichan)  # thumbnails of the untouched colour images


def verify(root, server, *extra):
    argv = [sys.executable, "-m", "verifier.cli.main", "verify", str(root), "--policy", POLICY, "--model",
            "demo-vision", "--base-url", server.url, "--concurrency", "4", *map(str, extra)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def report(root) -> dict[str, dict]:
    lines = (root / ".capcheck" / "reports" / "latest.jsonl").read_text().splitlines()
    return {r["image"]: r for r in map(json.loads, lines)}


def thumb(root, image_sha):
    return Image.open(root / ".capcheck" / "reports" / "thumbs" / f"{image_sha}.jpg").convert("L")


def assert_clean(proc):
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr


def caption_beside(image, dataset):
    (image.with_suffix(".txt")).write_text((dataset / SWIMSUIT).with_suffix(".txt").read_text())


def test_16_bit_grey_png_reaches_the_model_and_the_report_as_seen(dataset, model):
    path = dataset / SWIMSUIT
    grey = Image.open(path).convert("L")
    Image.eval(grey, lambda v: v).convert("I").point(lambda v: v * 257).convert("I;16").save(path)
    assert Image.open(path).mode == "I;16" and Image.open(path).getextrema()[1] > 255
    with DemoServer(model) as server:
        proc = verify(dataset, server)
    assert_clean(proc)
    row = report(dataset)[SWIMSUIT]
    # the server recognised the picture it was sent (a white page would be "cannot determine")
    assert row["status"] == "fix" and {"aspect": "framing", "caption": "full body", "image": "cowboy shot",
                                       "borderline": False} in row["fixes"], row
    shown = thumb(dataset, row["image_sha"])
    expected = grey.resize(shown.size, Image.Resampling.LANCZOS)
    assert ImageStat.Stat(ImageChops.difference(shown, expected)).mean[0] < 6  # the grey figure, not white
    assert ImageStat.Stat(shown).mean[0] < 250


def test_animations_and_pictures_that_are_not_dataset_images_are_named(dataset, model):
    folder = dataset / "02_clothed_pose" / "available"
    frames = [Image.new("RGB", (64, 96), c) for c in ("red", "blue")]
    frames[0].save(folder / "spin.png", save_all=True, append_images=frames[1:])  # an APNG
    caption_beside(folder / "spin.png", dataset)
    frames[0].save(folder / "wave.gif", save_all=True, append_images=frames[1:])
    frames[0].save(folder / "still.avif")
    caption_beside(folder / "wave.gif", dataset)
    with DemoServer(model) as server:
        proc = verify(dataset, server)
    assert_clean(proc)
    assert proc.returncode == 1  # the animation needs a person; the rest were verified
    assert ("skipped 02_clothed_pose/available/spin.png: animated (2 frames): the model would judge one frame "
            "and the trainer another; save the frame you train on as a PNG") in proc.stdout, proc.stdout
    assert ("2 not checked: .avif, .gif files are not images of this dataset (capcheck and kohya-style trainers "
            "read .jpeg .jpg .png .webp; convert them to include them): 02_clothed_pose/available/still.avif, "
            "02_clothed_pose/available/wave.gif") in proc.stdout, proc.stdout
    assert "12 images · 12 asked" in proc.stdout


def _bomb(path, side=20000):
    """A real decompression bomb: a 1-bit PNG of side x side, all zeros, about 50 KB on disk."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    row = b"\0" * (1 + side // 8)
    raw = zlib.compress(row * side, 9)
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_one_named_line_and_the_rest_are_stored(dataset, model):
    bomb = dataset / "02_clothed_pose" / "available" / "bomb.png"
    _bomb(bomb)
    caption_beside(bomb, dataset)
    with DemoServer(model) as server:
        proc = verify(dataset, server)
    assert_clean(proc)
    assert proc.returncode == 1
    assert ("skipped 02_clothed_pose/available/bomb.png: image is 400 megapixels, over capcheck's "
            "limit of 100: a decompression bomb, or far larger than any training image; scale it down"
            in proc.stdout), proc.stdout
    assert proc.stdout.count("bomb.png") == 1
    assert len(report(dataset)) == 12 and "02_clothed_pose/available/bomb.png" not in report(dataset)


def test_links_that_loop_dangle_or_leave_the_dataset_are_one_line_each(dataset, model, tmp_path):
    folder = dataset / "02_clothed_pose" / "available"
    outside = tmp_path / "elsewhere" / "outside.png"
    outside.parent.mkdir()
    Image.new("RGB", (64, 96), "white").save(outside)
    os.symlink("loop.png", folder / "loop.png")
    os.symlink("nowhere.png", folder / "gone.png")
    os.symlink(outside, folder / "away.png")
    os.symlink("020102.png", folder / "alias.png")  # inside the dataset: a usable image
    for name in ("loop", "gone", "away", "alias"):
        caption_beside(folder / f"{name}.png", dataset)
    with DemoServer(model) as server:
        proc = verify(dataset, server)
    assert_clean(proc)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert ("skipped 02_clothed_pose/available/loop.png: a link that points to itself (a loop): replace it with the "
            "image or remove it") in lines, proc.stdout
    assert ("skipped 02_clothed_pose/available/gone.png: a link to nowhere.png, which does not exist: restore the "
            "file or remove the link") in lines
    assert any(x.startswith("skipped 02_clothed_pose/available/away.png: a link to ") and "outside the dataset" in x
               for x in lines), proc.stdout
    assert "alias.png" not in proc.stdout
    assert len(report(dataset)) >= 12


def test_verify_makes_the_report_thumbnails_while_it_prepares(dataset, model, keichan):
    """Each thumbnail is made from the decode the request used, during the run, not after it."""
    import asyncio

    from verifier.core.store import Store
    from verifier.core.verify import VerifyOptions, verify_dataset

    folder = dataset / ".capcheck" / "reports" / "thumbs"
    with DemoServer(model) as server, Store(dataset) as store:
        options = VerifyOptions(model="demo", base_url=server.url, concurrency=4, aspects=["framing"])
        run = asyncio.run(verify_dataset(dataset, keichan, options, store))
    made = {p.stem for p in folder.glob("*.jpg")}
    assert made == {r.image_sha for r in run.results} and len(made) == 12  # before any report was written
    assert all(max(Image.open(p).size) == 320 for p in folder.glob("*.jpg"))


def _session(sid: int) -> list[int]:
    """Processes still alive in session `sid` (Linux /proc)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_worker_processes_follow_a_run_killed_with_9(clothed47_dataset, keichan):
    """47 images are prepared in worker processes; kill -9 of the run leaves none of them behind."""
    model = DemoModel.load(clothed47_dataset / "truth.json", clothed47_dataset, keichan)
    with DemoServer(model, Faults(latency=1.0)) as server:
        argv = [sys.executable, "-m", "verifier.cli.main", "verify", str(clothed47_dataset), "--policy", POLICY,
                "--model", "demo-vision", "--base-url", server.url, "--concurrency", "4"]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 120
        while server.stats.snapshot()["requests"] < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_session(proc.pid)) > 1  # the run and its preparing workers
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 20
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert _session(proc.pid) == []


def test_capcheck_run_names_a_looping_link_and_goes_on(example_dataset):
    """The whole loop (build, verify, apply, route, the training gate) over a dataset with a link to itself."""
    folder = example_dataset / "01_bust_front" / "available"
    os.symlink("loop.png", folder / "loop.png")
    (folder / "loop.json").write_bytes((folder / "010001.json").read_bytes())
    argv = [sys.executable, "-m", "verifier.cli.main", "run", str(example_dataset), "--policy", POLICY,
            "--demo-model", str(TRUTH), "--no-train"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert_clean(proc)
    assert ("skipped 01_bust_front/available/loop.png: a link that points to itself (a loop): replace it with the "
            "image or remove it") in proc.stdout, proc.stdout
    assert "12 images (12 asked, 0 from the store, 1 could not be read)" in proc.stdout


def test_the_human_loop_goes_on_past_broken_links(example_dataset):
    """ingest hashed every dataset image to match the sorted copies and died on a dangling link
    (FileNotFoundError traceback); apply, route, ingest and agreement must all go on past such links."""
    policy, truth = EXAMPLES / "keichan" / "policy.yaml", EXAMPLES / "keichan" / "truth.json"

    def cli(*args: object) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    done = cli("run", example_dataset, "--policy", policy, "--demo-model", truth, "--no-train")
    assert done.returncode == 0, done.stderr
    folder = next(p for p in sorted(example_dataset.iterdir()) if p.is_dir() and not p.name.startswith(("_", ".")))
    (folder / "zz_dangling.png").symlink_to("missing.png")
    (folder / "zz_loop.png").symlink_to("zz_loop.png")
    for args in (("apply", example_dataset), ("route", example_dataset, "--aspects", "framing"),
                 ("ingest", example_dataset / "_review", "--aspects", "framing"), ("agreement", example_dataset)):
        done = cli(*args)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stderr)


def test_workers_start_while_the_dataset_is_hashed_and_not_when_the_store_has_every_file(clothed47_dataset,
                                                                                         keichan):
    """47 files new to the store: the worker processes are started during the hashing (their start and
    imports overlap it); the same files again (hashes cached): no worker is started for a run the
    store will answer."""
    from verifier.core.options import VerifyOptions
    from verifier.core.store import Store
    from verifier.core.verify import Verifier

    options = VerifyOptions(model="demo-vision", base_url="http://127.0.0.1:9/v1")
    with Store(clothed47_dataset) as store:
        first = Verifier(clothed47_dataset, keichan, options, store)
        works, _, _ = first._works()
        assert len(works) == 47 and first.preparing is not None and first.preparing.processes
        first.preparing.close()
        again = Verifier(clothed47_dataset, keichan, options, store)
        assert len(again._works()[0]) == 47 and again.preparing is None
