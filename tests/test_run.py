"""`capcheck run` end to end on the bundled example (issue 6's done-when):
the loop through the CLI with the tiny trainer model, and kills."""

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from captions import facts_from_caption, parse
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer, Faults

from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
TRUTH = EXAMPLES / "keichan" / "truth.json"


def run_args(root, cfg, *extra):
    return [sys.executable, "-m", "verifier.cli.main", "run", str(root), "--policy", POLICY, "--config", str(cfg), *extra]


def capcheck(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600)


def config(path, tiny_anima, out, **over):
    path.write_text(yaml.safe_dump({**dict(model_path=str(tiny_anima), resolution=256, epochs=1, lora_rank=4,
                                           learning_rate=1e-3, mixed_precision="no", device="cpu",
                                           output_dir=str(out), output_name="keichan", max_sequence_length=64), **over}))
    return path


def person_sorts(root):
    """What a person does with the routed image: the feet are in frame, so full body."""
    review = root / "_review" / "framing"
    (review / "cowboy_shot" / "020104.png").rename(review / "full_body" / "020104.png")
    proc = capcheck(sys.executable, "-m", "verifier.cli.main", "ingest", root / "_review", "--aspects", "framing")
    assert proc.returncode == 0 and "changed 0, unchanged 1" in proc.stdout


def captions_of(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.txt")) if "_review" not in p.parts}


def test_the_whole_loop_on_the_example(example_dataset, tiny_anima, keichan, tmp_path):
    cfg = config(tmp_path / "train.yaml", tiny_anima, tmp_path / "out")
    first = capcheck(*run_args(example_dataset, cfg, "--demo-model", TRUTH))
    assert first.returncode == 0, first.stdout + first.stderr  # stopped where a person is needed: not a failure
    assert "DEMO MODEL" in first.stderr
    assert "verify: 12 images (12 asked, 0 from the store): ok 8 · fix 4" in first.stdout
    assert "apply: changed 3, borderline left for a person 1" in first.stdout
    assert f"  capcheck ingest {example_dataset / '_review'} --aspects framing" in first.stdout
    assert (example_dataset / "_review" / "framing" / "cowboy_shot" / "020104.png").exists()
    assert not (tmp_path / "out").exists()

    person_sorts(example_dataset)
    second = capcheck(*run_args(example_dataset, cfg, "--demo-model", TRUTH))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "verify: 12 images (0 asked, 12 from the store)" in second.stdout
    # the three captions apply fixed count as fixed, though the stored observations now agree with them
    assert ("review: nothing needs a person (12 captions: verified 8, fixed by apply 3, settled by a person 1, "
            "not verified 0)" in second.stdout)
    assert "train: 12/12 steps, 1 LoRA file(s)" in second.stdout
    lora = load_file(str(tmp_path / "out" / "keichan_epoch001.safetensors"))
    assert len([k for k in lora if k.endswith(".lora_A.weight")]) == 20  # 2 tiny blocks x 10 modules
    assert not [k for k in lora if k.endswith(".alpha")]  # alpha == rank: no .alpha, plain load_lora_weights works

    truth = json.loads(TRUTH.read_text())
    for rel, facts in truth.items():  # every caption now says what its image shows
        got = facts_from_caption(parse((example_dataset / rel).with_suffix(".txt").read_text()), keichan)
        for aspect in ("framing", "view", "facing", "expression"):
            if got.get(aspect) is not None:
                assert got.get(aspect) == facts[aspect], (rel, aspect)
    db = sqlite3.connect(example_dataset / ".capcheck" / "capcheck.db")
    kinds = dict(db.execute("SELECT r.kind, count(*) FROM journal j JOIN runs r ON r.id = j.run_id GROUP BY r.kind"))
    assert kinds == {"build": 12, "apply": 3}  # the person's answer changed no caption: it confirmed one

    third = capcheck(*run_args(example_dataset, cfg, "--demo-model", TRUTH))
    assert third.returncode == 0 and "train: already done on this exact dataset (12 steps)" in third.stdout
    assert "written 0" in third.stdout and "(0 asked, 12 from the store)" in third.stdout


def test_no_gpu_stops_before_training_and_no_train_finishes(example_dataset, tiny_anima, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = config(tmp_path / "gpu.yaml", tiny_anima, tmp_path / "out", device="auto")
    capcheck(*run_args(example_dataset, cfg, "--demo-model", TRUTH))
    person_sorts(example_dataset)
    proc = capcheck(*run_args(example_dataset, cfg, "--demo-model", TRUTH))
    assert proc.returncode == 5 and "preflight: failed: CUDA" in proc.stdout
    assert "fix: run on a machine with an NVIDIA GPU" in proc.stdout
    proc = capcheck(*run_args(example_dataset, cfg, "--demo-model", TRUTH, "--no-train"))
    assert proc.returncode == 0 and "train: skipped (--no-train)" in proc.stdout


def _wait(predicate, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)


def _verdicts(root):
    path = root / ".capcheck" / "capcheck.db"
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path) as db:
            return db.execute("SELECT count(*) FROM verdicts").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _step(out):
    try:
        return json.loads((out / "state.json").read_text())["step"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def test_kills_during_verify_and_training_end_where_an_unbroken_run_does(example_dataset, tiny_anima, keichan,
                                                                          tmp_path):
    reference = tmp_path / "reference"
    shutil.copytree(example_dataset, reference)
    train = dict(epochs=3, save_every_steps=4, save_every=0)
    model = DemoModel.load(TRUTH, example_dataset, keichan)
    with DemoServer(model, Faults(latency=0.3)) as server:
        slow = ["--base-url", server.url, "--model", "demo", "--concurrency", "2"]
        ref_cfg = config(tmp_path / "ref.yaml", tiny_anima, tmp_path / "ref-out", **train)
        assert capcheck(*run_args(reference, ref_cfg, *slow, "--fail-on-review")).returncode == 3
        person_sorts(reference)
        assert capcheck(*run_args(reference, ref_cfg, *slow)).returncode == 0

        cfg = config(tmp_path / "train.yaml", tiny_anima, tmp_path / "out", **train)
        proc = subprocess.Popen(run_args(example_dataset, cfg, *slow), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait(lambda: _verdicts(example_dataset) >= 3)
        proc.send_signal(signal.SIGKILL)  # killed during verify
        proc.wait()
        assert 3 <= _verdicts(example_dataset) < 12
        assert capcheck(*run_args(example_dataset, cfg, *slow, "--fail-on-review")).returncode == 3
        person_sorts(example_dataset)
        proc = subprocess.Popen(run_args(example_dataset, cfg, *slow), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _wait(lambda: _step(tmp_path / "out") >= 6)
        proc.send_signal(signal.SIGKILL)  # killed during training, after the state saved at step 4
        proc.wait()
        assert 6 <= _step(tmp_path / "out") < 36
        final = capcheck(*run_args(example_dataset, cfg, *slow))
    assert final.returncode == 0, final.stdout + final.stderr
    assert "train: 36/36 steps, resumed at step" in final.stdout
    assert captions_of(example_dataset) == captions_of(reference)  # the same final captions
    ours = load_file(str(tmp_path / "out" / "keichan_epoch003.safetensors"))
    theirs = load_file(str(tmp_path / "ref-out" / "keichan_epoch003.safetensors"))
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)  # the same LoRA
