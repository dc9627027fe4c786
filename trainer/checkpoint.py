"""What a run leaves behind, and how it picks up again.

Per save: `{output_name}_epoch{NNN}.safetensors` (ComfyUI names, with the
resolved config, dataset hash, caption policy and verification summary in
its metadata). With each of them, every `save_state_every` steps (default:
every epoch) and on Ctrl-C: `{output_name}_state.pt` (LoRA, optimizer and
scaler, position, the CPU, CUDA and Python random states, losses) for
`--resume`, written to a temp file and renamed, so a kill at any moment
leaves the previous state whole. While it runs: `state.json` in
AnimaLoraToolkit's monitor shape (step, total_steps, epoch, speed, losses,
samples, ETA), rewritten atomically every `log_every` steps.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path


def lora_path(output: Path, name: str, epoch: int, step: int | None = None) -> Path:
    suffix = f"_epoch{epoch:03d}" if step is None else f"_step{step:06d}"
    return output / f"{name}{suffix}.safetensors"


def epoch_of(filename: str, name: str) -> int | None:
    """The epoch of a LoRA file `lora_path` wrote for `name` (None for a step save or another file)."""
    m = re.fullmatch(rf"{re.escape(name)}_epoch(\d{{3,}})\.safetensors", filename)
    return int(m.group(1)) if m else None


def state_path(output: Path, name: str) -> Path:
    return output / f"{name}_state.pt"


def save_state(path: Path, **state: object) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_states() -> dict:
    """Every random stream a step draws from: noise and timesteps come from the device's."""
    import random

    import torch

    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch_rng": torch.get_rng_state(), "cuda_rng": cuda, "python_rng": random.getstate()}


def set_rng_states(state: dict) -> None:
    import random

    import torch

    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    random.setstate(state["python_rng"])


def load_state(path: Path) -> dict:
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


@dataclass
class Monitor:
    path: Path | None  # None: keep the numbers, write nothing (a process other than rank 0)
    total_steps: int
    total_epochs: int
    losses: list[list[float]] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    first_step: int = 0
    extra: dict = field(default_factory=dict)  # e.g. the dataset hash, so a later run knows what this one trained

    def write(self, step: int, epoch: int, status: str = "running", lr: float | None = None) -> dict:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        done = step - self.first_step
        speed = done / elapsed if done else 0.0
        eta = (self.total_steps - step) / speed if speed else None
        data = {"step": step, "total_steps": self.total_steps, "epoch": epoch, "total_epochs": self.total_epochs,
                "speed": round(speed, 4), "losses": self.losses[-500:], "samples": self.samples,
                "eta_seconds": round(eta, 1) if eta is not None else None,
                "eta": time.strftime("%H:%M:%S", time.gmtime(eta)) if eta is not None else None,
                "lr": lr, "status": status, "updated": time.time(), **self.extra}
        if self.path is not None:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text(json.dumps(data), encoding="utf-8")
            os.replace(tmp, self.path)
        return data
