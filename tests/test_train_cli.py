"""`capcheck train / plan / preflight` as a user runs them; the gate in front of training."""

import json
import subprocess
import sys

import torch
import yaml
from safetensors import safe_open

from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def write_config(path, tiny_anima, out, **over):
    cfg = {**dict(model_path=str(tiny_anima), resolution=256, epochs=1, repeats=1, batch_size=1, lora_rank=4,
                  learning_rate=1e-3, mixed_precision="no", device="cpu", output_dir=str(out), output_name="keichan",
                  max_sequence_length=64, save_every=1), **over}
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_the_gate_then_training_after_verify_and_apply(example_dataset, tiny_anima, keichan, tmp_path):
    cfg = write_config(tmp_path / "train.yaml", tiny_anima, tmp_path / "out")
    assert capcheck("build", example_dataset, "--policy", POLICY).returncode == 0
    proc = capcheck("train", example_dataset, "--config", cfg)
    assert proc.returncode == 1 and "not training: 12 of 12 captions are not verified" in proc.stdout
    assert "01_bust_front/available/010001.png: never verified" in proc.stdout

    model = DemoModel.load(EXAMPLES / "keichan" / "truth.json", example_dataset, keichan)
    with DemoServer(model) as server:
        assert capcheck("verify", example_dataset, "--policy", POLICY, "--model", "demo", "--base-url",
                        server.url).returncode == 0
    proc = capcheck("train", example_dataset, "--config", cfg)
    assert proc.returncode == 1 and "not training: 4 of 12" in proc.stdout
    assert "02_clothed_pose/available/020101.png: fix not applied (framing full body->cowboy shot)" in proc.stdout
    assert not (tmp_path / "out").exists()  # nothing started

    assert capcheck("apply", example_dataset).returncode == 0
    proc = capcheck("train", example_dataset, "--config", cfg)
    assert proc.returncode == 1 and "not training: 1 of 12" in proc.stdout
    assert ("020104.png: the model's borderline call, for a person to settle (framing full body->cowboy shot)"
            in proc.stdout)
    assert capcheck("route", example_dataset, "--aspect", "framing").returncode == 0
    review = example_dataset / "_review" / "framing"
    (review / "cowboy_shot" / "020104.png").rename(review / "full_body" / "020104.png")  # a person: feet in frame
    assert capcheck("ingest", example_dataset / "_review", "--aspect", "framing").returncode == 0
    proc = capcheck("train", example_dataset, "--config", cfg)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "capcheck train: 12/12 steps" in proc.stdout
    lora = tmp_path / "out" / "keichan_epoch001.safetensors"
    with safe_open(str(lora), "pt") as fh:
        meta = fh.metadata()
    assert json.loads(meta["capcheck_verification"]) == {"images": 12, "verified": 8, "fixed": 3,
                                                         "human-ingested": 1, "unverified": 0}
    assert json.loads(meta["capcheck_policy"])["trigger"] == "keichan" and len(meta["capcheck_dataset_hash"]) == 64
    assert not any(str(tmp_path) in value for value in meta.values())  # no local path travels with the file
    assert meta["ss_output_name"] == "keichan" and meta["ss_num_train_images"] == "12"


def test_allow_unverified_and_plan_from_a_config(example_dataset, tiny_anima, tmp_path):
    cfg = write_config(tmp_path / "train.yaml", tiny_anima, tmp_path / "out", repeats=4, epochs=20)
    assert capcheck("build", example_dataset, "--policy", POLICY).returncode == 0
    proc = capcheck("plan", "--config", cfg, example_dataset, "--its", "2")
    assert proc.returncode == 0 and "12 images x 4 repeats / batch 1 = 48 steps per epoch; x 20 epochs = 960" in proc.stdout
    assert "exposures per image: 80" in proc.stdout
    short = write_config(tmp_path / "short.yaml", tiny_anima, tmp_path / "out", max_steps=3)
    proc = capcheck("train", example_dataset, "--config", short, "--allow-unverified")
    assert proc.returncode == 0 and "capcheck train: 3/3 steps" in proc.stdout


def test_preflight_cli(tiny_anima, tmp_path):
    ok = write_config(tmp_path / "cpu.yaml", tiny_anima, tmp_path / "out", xformers=False)
    proc = capcheck("preflight", "--config", ok)
    assert proc.returncode == 0 and "✓ transformers knows qwen3" in proc.stdout and "✓ text path" in proc.stdout
    assert "ignored xformers" in proc.stderr
    if not torch.cuda.is_available():
        gpu = write_config(tmp_path / "gpu.yaml", tiny_anima, tmp_path / "out", device="auto")
        proc = capcheck("preflight", "--config", gpu)
        assert proc.returncode == 1 and "✗ CUDA" in proc.stdout and "  fix: run on a machine with an NVIDIA GPU" in proc.stdout


def test_ctrl_c_saves_state_and_resume_finishes(example_dataset, tiny_anima, tmp_path):
    import signal
    import time

    cfg = write_config(tmp_path / "long.yaml", tiny_anima, tmp_path / "out", epochs=40, save_every=0)
    assert capcheck("build", example_dataset, "--policy", POLICY).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", "train", str(example_dataset), "--config", str(cfg),
                             "--allow-unverified"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state = tmp_path / "out" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if json.loads(state.read_text())["step"] >= 5:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "state saved; run the same command with --resume" in err
    saved = json.loads(state.read_text())
    assert saved["status"] == "interrupted" and 5 <= saved["step"] < 480
    short = write_config(tmp_path / "long.yaml", tiny_anima, tmp_path / "out", epochs=40, save_every=0,
                         max_steps=saved["step"] + 4)
    proc = capcheck("train", example_dataset, "--config", short, "--allow-unverified", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert f"resumed at step {saved['step']}" in proc.stdout + proc.stderr
    assert f"capcheck train: {saved['step'] + 4}/{saved['step'] + 4} steps" in proc.stdout
