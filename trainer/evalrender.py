"""Rendering the eval matrix: prompt format x seed x strength for each saved epoch, plus a no-LoRA baseline.

The articles' sweet-spot search, made repeatable: the same prompts and seeds
through every epoch's LoRA, by the trainer's own sampler (trainer/sample.py).

Load once, swap in place. The base (DiT, text models, VAE) is loaded once
per call and each prompt encoded once; the baseline (epoch 0) is rendered
from the bare DiT, then one peft adapter takes each epoch's weights in turn
(`lora.LoraSwap`). Reloading the base per epoch would cost its load each
time: the first article's 2B DiT took minutes to load from a network volume.

Files, under EVALROOT/samples/ (EVALROOT = output_dir/eval): one PNG per
(epoch, format, seed, strength), `ep0020_K_s42_w1.0.png`, and beside it a
JSON sidecar of the same stem:

    {"capcheck_sample": 1, "prompt", "negative", "format", "seed", "steps", "cfg",
     "width", "height", "lora" (file name; null for the baseline), "strength",
     "epoch" (0: the baseline), "render_key"}

The baseline is rendered once per (format, seed), strength 0.0: without a
LoRA every strength gives the same image. `render_key` fingerprints what the
sidecar's settings do not name (the base model files, the LoRA file's size
and mtime, the sampler's shift and precision), so a retrained epoch file is
rendered again. The PNG is written first, then the sidecar, each to a temp
name and renamed: a sidecar proves its image whole, and a sample is kept
when its sidecar equals what would be written now.

No torch at import time: `saved_epochs` and `plan_samples` serve `capcheck eval`
and `capcheck plan` without it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.checkpoint import epoch_of
from trainer.config import EvalConfig, TrainConfig
from trainer.errors import TrainError

SIDECAR_VERSION = 1


@dataclass(frozen=True)
class Cell:
    """One sample of the matrix."""

    epoch: int  # 0: the baseline, no LoRA
    format: str
    seed: int
    strength: float  # 0.0 for the baseline
    lora: Path | None

    @property
    def stem(self) -> str:
        return f"ep{self.epoch:04d}_{self.format}_s{self.seed}_w{float(self.strength)}"


def output_dir(config: TrainConfig) -> Path:
    return config.path(config.output_dir) or Path("output")


def eval_root(config: TrainConfig) -> Path:
    return output_dir(config) / "eval"


def samples_dir(config: TrainConfig) -> Path:
    return eval_root(config) / "samples"


def saved_epochs(config: TrainConfig) -> dict[int, Path]:
    """Epoch -> its LoRA file in output_dir (the `_epochNNN` files the trainer writes), in epoch order."""
    folder = output_dir(config)
    if not folder.is_dir():
        return {}
    found = {}
    for path in folder.iterdir():
        if (epoch := epoch_of(path.name, config.output_name)) is not None and path.is_file():
            found[epoch] = path
    return dict(sorted(found.items()))


def spec(config: TrainConfig) -> EvalConfig:
    """The eval section, refused when there is nothing to render."""
    where = config.source
    if config.eval is None:
        raise TrainError(where, "no eval: section (add eval: prompts: {K: \"...\"} to render samples)")
    if not config.eval.prompts:
        raise TrainError(where, "eval.prompts is empty: name at least one prompt to render (e.g. K: \"keichan, "
                                "1girl, solo\")")
    return config.eval


def chosen_epochs(config: TrainConfig, epochs: list[int] | None) -> dict[int, Path]:
    """The LoRA files to render: `epochs` (or the spec's), default every saved one; unsaved ones refused."""
    saved = saved_epochs(config)
    wanted = epochs if epochs is not None else spec(config).epochs
    listing = ", ".join(map(str, saved)) or "none"
    if wanted is None:
        if not saved:
            raise TrainError(output_dir(config), f"no saved LoRA ({config.output_name}_epochNNN.safetensors): "
                                                 "train first")
        return saved
    missing = [e for e in wanted if e not in saved]
    if missing:
        raise TrainError(output_dir(config), f"no saved LoRA for epoch {', '.join(map(str, missing))} "
                                             f"(saved epochs: {listing})")
    return {e: saved[e] for e in sorted(set(wanted))}


def settings(config: TrainConfig) -> dict:
    """The sampler settings of every sample: the spec's, else the config's sample_* ones."""
    ev = spec(config)
    return {"negative": ev.negative, "steps": ev.steps or config.sample_steps,
            "cfg": float(ev.cfg if ev.cfg is not None else config.sample_cfg_scale),
            "width": ev.width or config.sample_width, "height": ev.height or config.sample_height}


def cells(config: TrainConfig, epochs: list[int] | None) -> list[Cell]:
    """The baseline's samples first, then each chosen epoch's."""
    ev = spec(config)
    loras = chosen_epochs(config, epochs)
    out = [Cell(0, name, seed, 0.0, None) for name in ev.prompts for seed in ev.seeds]
    for epoch, lora in loras.items():
        out += [Cell(epoch, name, seed, float(w), lora) for name in ev.prompts for seed in ev.seeds
                for w in ev.strengths]
    return out


def render_key(config: TrainConfig, lora: Path | None, base: str) -> str:
    stat = lora.stat() if lora is not None else None
    parts = [base, lora.name if lora else "", stat.st_size if stat else 0, stat.st_mtime_ns if stat else 0,
             config.timestep_shift, config.mixed_precision, config.max_sequence_length]
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()[:16]


def sidecar(config: TrainConfig, cell: Cell, base: str) -> dict:
    s = settings(config)
    return {"capcheck_sample": SIDECAR_VERSION, "prompt": spec(config).prompts[cell.format], "negative": s["negative"],
            "format": cell.format, "seed": cell.seed, "steps": s["steps"], "cfg": s["cfg"], "width": s["width"],
            "height": s["height"], "lora": cell.lora.name if cell.lora else None, "strength": cell.strength,
            "epoch": cell.epoch, "render_key": render_key(config, cell.lora, base)}


def plan_samples(config: TrainConfig, epochs: list[int] | None = None) -> list[tuple[Cell, Path, dict, bool]]:
    """Each sample with its PNG path, the sidecar it should have, and whether it is there already."""
    from trainer.models import fingerprint

    matrix = cells(config, epochs)
    keys = ("model_path",) if config.model_path else ("transformer_path", "vae_path", "text_encoder_path",
                                                      "t5_tokenizer_path")
    for key in keys:
        if not (path := config.path(getattr(config, key))).exists():
            raise TrainError(path, f"{key} not found")
    base = fingerprint(*(config.path(getattr(config, key)) for key in keys))
    folder = samples_dir(config)
    out = []
    for cell in matrix:
        png, meta = folder / f"{cell.stem}.png", sidecar(config, cell, base)
        out.append((cell, png, meta, png.is_file() and _read_sidecar(png.with_suffix(".json")) == meta))
    return out


def _read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing or torn: render again
        return None


def _write(png: Path, image, meta: dict) -> None:
    """The image, then its sidecar, each atomically: a killed render leaves no sidecar without its image."""
    png.parent.mkdir(parents=True, exist_ok=True)
    png.with_suffix(".json").unlink(missing_ok=True)  # an old sidecar must not vouch for a half-written image
    tmp = png.with_name(f".{png.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, png)
    side = png.with_suffix(".json")
    tmp = side.with_name(f".{side.name}.tmp")
    tmp.write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, side)


@dataclass(frozen=True)
class Rendered:
    """What a render call did: every PNG of the matrix, and how many each process rendered now."""

    pngs: list[Path]
    per_process: list[int]  # samples rendered now, per rank (one entry without a launcher)
    main: bool = True  # False on the other ranks of a launched world: rank 0 goes on alone

    @property
    def count(self) -> int:
        return sum(self.per_process)


def render(config: TrainConfig, epochs: list[int] | None = None,
           progress: Callable[[int, int], None] | None = None) -> Rendered:
    """Render the samples missing for `epochs` (default: the spec's, else every saved one) and the baseline.

    `progress(done, total)` is called after each sample rendered (total: the
    samples missing at the start). Started by a launcher (`capcheck eval
    --processes N`, torchrun), each process renders a contiguous share of
    what is missing, in epoch order, so each loads few LoRAs; a sample depends
    only on its own seed, so who renders it does not change it.
    """
    from trainer.dist import world_from_env

    if world_from_env() > 1:
        return _render_shared(config, epochs, progress or _quiet)
    planned = plan_samples(config, epochs)
    todo = [(cell, png, meta) for cell, png, meta, present in planned if not present]
    if todo:
        _render(config, todo, progress or _quiet, _device(config))
    return Rendered([png for _, png, _, _ in planned], [len(todo)])


def _quiet(done: int, total: int) -> None:
    return None


def _render_shared(config: TrainConfig, epochs: list[int] | None, progress: Callable[[int, int], None]) -> Rendered:
    from trainer.dist import Rank

    device = _device(config)
    rank = Rank.start(device)
    try:
        planned = plan_samples(config, epochs)
        rank.wait()  # every process has seen what is missing before any writes: the same list, the same shares
        todo = sorted(((cell, png, meta) for cell, png, meta, present in planned if not present),
                      key=lambda t: (t[0].epoch, t[0].stem))
        mine = rank.share(todo)
        if mine:
            _render(config, mine, rank.main_only(progress), rank.device(device))
        counts = rank.gather([len(mine)])
        rank.wait()  # every sample is written before rank 0 reads them
    finally:
        rank.close()
    return Rendered([png for _, png, _, _ in planned], counts, rank.main)


def _device(config: TrainConfig):
    import torch

    from trainer.step import pick_device

    if config.device == "auto" and not torch.cuda.is_available():  # pick_device's own words are about training
        raise TrainError(config.source, "no CUDA GPU to render the eval samples on (device: cpu renders them on the "
                                        "CPU, slowly)")
    return pick_device(config)


def _render(config: TrainConfig, todo: list[tuple[Cell, Path, dict]], progress: Callable[[int, int], None],
            device) -> None:
    import contextlib

    import torch

    from trainer import shim
    from trainer.encode import encode_text
    from trainer.lora import LoraSwap
    from trainer.models import load_anima
    from trainer.sample import sample
    from trainer.step import compute_dtype

    shim.install()
    dtype = compute_dtype(config.mixed_precision)
    parts = load_anima(config, device, dtype)
    s, length = settings(config), config.max_sequence_length
    contexts = {name: encode_text(parts, [spec(config).prompts[name]], length, device)
                for name in dict.fromkeys(cell.format for cell, _, _ in todo)}
    negative = encode_text(parts, [s["negative"]], length, device)
    swap, current = LoraSwap(parts.transformer), "none loaded"
    autocast = torch.autocast(device.type, dtype=dtype) if config.mixed_precision != "no" else None
    for done, (cell, png, meta) in enumerate(sorted(todo, key=lambda t: t[0].epoch), 1):
        if cell.lora != current:  # the baseline sorts first, before any adapter exists
            if cell.lora is None:
                swap.off()
            else:
                swap.load(cell.lora)
            current = cell.lora
        if cell.lora is not None:
            swap.scale(cell.strength)
        with autocast or contextlib.nullcontext():
            image = sample(parts.transformer, parts.vae, contexts[cell.format], negative, width=s["width"],
                           height=s["height"], steps=s["steps"], cfg=s["cfg"], seed=cell.seed,
                           timestep_shift=config.timestep_shift, device=device, dtype=dtype)
        _write(png, image, meta)
        progress(done, len(todo))
