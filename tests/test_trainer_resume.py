"""Resume after a crash: the state is written every `save_state_every` steps, atomically; a run
killed (SIGKILL, no chance to save) between two state saves resumes from the last one and
reaches the same LoRA as a run never stopped. And the DataLoader behind `num_workers`."""

import json
import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from trainer.checkpoint import load_state
from trainer.config import TrainConfig
from trainer.loop import Trainer

# A training process that stops dead at a given step, as a preempted spot instance would.
HANG_AT = """
import json, sys, time
from pathlib import Path
from trainer.config import TrainConfig
from trainer.loop import Trainer

config, dataset, marker, stop = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])

def on_step(s):
    if s.step >= stop:
        marker.write_text(str(s.step))
        time.sleep(600)  # killed here

Trainer(TrainConfig(**config), dataset, on_step=on_step).run()
"""


def settings(tiny_anima, out, **over) -> dict:
    # Flips, shuffled tags and tag dropout: each batch's randomness must come back too.
    return {**dict(model_path=str(tiny_anima), resolution=256, epochs=2, batch_size=1, lora_rank=4,
                   learning_rate=5e-3, mixed_precision="no", device="cpu", output_dir=str(out), output_name="tiny",
                   max_sequence_length=64, seed=5, flip_augment=True, shuffle_caption=True, keep_tokens=2,
                   tag_dropout=0.2, log_every=1, save_state_every=3, save_every=0), **over}


def test_a_run_killed_between_state_saves_resumes_to_the_same_lora(tiny_anima, tiny_dataset, tmp_path):
    killed = settings(tiny_anima, tmp_path / "killed")
    marker = tmp_path / "at-step"
    proc = subprocess.Popen([sys.executable, "-c", HANG_AT, json.dumps(killed), str(tiny_dataset), str(marker), "5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert marker.exists(), proc.stderr.read() if proc.poll() is not None else "never reached step 5"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    state_file = tmp_path / "killed" / "tiny_state.pt"
    state = load_state(state_file)
    assert state["step"] == 3 and (state["epoch"], state["batch"]) == (1, 3)  # mid-epoch: 4 batches per epoch
    assert {"torch_rng", "cuda_rng", "python_rng", "optimizer", "scaler", "lora"} <= set(state)
    assert [p.name for p in state_file.parent.iterdir() if p.name.endswith(".tmp")] == []

    resumed = Trainer(TrainConfig(**killed), tiny_dataset).run(resume=True)
    assert resumed.resumed_from == 3 and resumed.steps == resumed.total_steps == 8
    full = Trainer(TrainConfig(**settings(tiny_anima, tmp_path / "full")), tiny_dataset).run()
    a, b = load_file(str(full.loras[-1])), load_file(str(resumed.loras[-1]))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)  # as if never stopped
    assert resumed.losses == full.losses[3:]


def test_num_workers_feeds_the_same_batches_from_worker_processes(tiny_anima, tiny_dataset, tmp_path):
    from trainer.data import epoch_batches, load_samples
    from trainer.encode import Cache
    from trainer.feed import EpochBatches, loader

    cfg = TrainConfig(**settings(tiny_anima, tmp_path, cache_latents=False, num_workers=2))
    samples = load_samples(tiny_dataset, cfg.resolution)
    order = epoch_batches(samples, 1, 1, cfg.seed, 2)
    dataset = EpochBatches(samples, order, 1, epoch=2, config=cfg, cache=Cache(tmp_path / "c", "x"), contexts={})
    inline = list(loader(dataset, 0, torch.device("cpu")))
    workers = loader(dataset, 2, torch.device("cpu"))
    assert workers.num_workers == 2 and not workers.pin_memory  # pinned memory is for a CUDA device
    from_workers = list(workers)
    assert [x["index"] for x in inline] == [x["index"] for x in from_workers] == [1, 2, 3]  # from batch 1 on
    for a, b in zip(inline, from_workers, strict=True):
        assert a["texts"] == b["texts"] and torch.equal(a["pixels"], b["pixels"])


def test_num_workers_trains_the_same_lora(tiny_anima, tiny_dataset, tmp_path):
    base = settings(tiny_anima, tmp_path / "a", epochs=1, save_state_every=None, log_every=10)
    inline = Trainer(TrainConfig(**base), tiny_dataset).run()
    workers = Trainer(TrainConfig(**{**base, "output_dir": str(tmp_path / "b"), "num_workers": 2}), tiny_dataset).run()
    a, b = load_file(str(inline.loras[-1])), load_file(str(workers.loras[-1]))
    assert all(torch.equal(a[k], b[k]) for k in a) and inline.losses == workers.losses
