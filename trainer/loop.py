"""The training loop: LoRA on the frozen Anima DiT, rectified flow, AdamW.

bf16 autocast on CUDA (fp32 on CPU, where autocast buys nothing), gradient
checkpointing, PyTorch SDPA attention (diffusers' default), gradient
clipping, a fixed seed. An epoch's batch order depends only on the seed and
the epoch, and the random states are saved with the optimizer, so `--resume`
continues at the exact batch and step a run stopped at (its last save, or
Ctrl-C, which saves before it leaves).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainer.checkpoint import Monitor, load_state, lora_path, save_state, state_path
from trainer.config import TrainConfig, save_resolved
from trainer.data import Sample, epoch_batches, image_tensor, load_samples, training_text
from trainer.errors import TrainError


@dataclass
class Step:
    step: int
    total_steps: int
    epoch: int
    loss: float
    speed: float  # optimizer steps per second
    eta_s: float | None


@dataclass
class Result:
    loras: list[Path] = field(default_factory=list)
    samples: list[Path] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    resumed_from: int | None = None
    losses: list[float] = field(default_factory=list)
    interrupted: bool = False
    cache_hits: int = 0
    cache_misses: int = 0


@dataclass
class _Session:
    """Everything one run holds, and where it is."""

    parts: object
    samples: list[Sample]
    cache: object
    contexts: dict
    prompts: list
    negative: object
    params: list
    optimizer: object
    device: object
    dtype: object
    amp: object
    result: Result
    monitor: Monitor
    step: int = 0
    epoch: int = 1
    batch: int = 0  # the next batch of `epoch` not yet in an optimizer step
    rng: random.Random = field(default_factory=random.Random)  # flips, shuffles, dropout


def pick_device(config: TrainConfig):
    import torch

    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        if config.device == "auto":
            raise TrainError(None, "no CUDA GPU: training an Anima LoRA needs one (device: cpu only for smoke tests)")
        return torch.device("cpu"), torch.float32, None
    if not torch.cuda.is_available():
        raise TrainError(None, "device: cuda, but torch sees no CUDA GPU")
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)
    return torch.device("cuda"), amp or torch.float32, amp


def _pad(contexts):
    """Stack (L_i, D) contexts into (B, max L, D), zero-padded (as the conditioner pads)."""
    import torch

    length = max(c.shape[0] for c in contexts)
    return torch.stack([torch.nn.functional.pad(c, (0, 0, 0, length - c.shape[0])) for c in contexts])


def _speed(window: list[tuple[float, int]]) -> float:
    """Steps per second over the recent window."""
    if len(window) < 2:
        return 0.0
    return (window[-1][1] - window[0][1]) / max(window[-1][0] - window[0][0], 1e-9)


def total_steps(config: TrainConfig, samples: list[Sample]) -> int:
    """Optimizer steps of the run. Every epoch has as many batches (the order
    changes, the buckets' sizes do not), so one epoch's count serves all."""
    batches = len(epoch_batches(samples, config.repeats, config.batch_size, config.seed, 1))
    total = math.ceil(batches / config.grad_accum) * config.epochs
    return min(total, config.max_steps) if config.max_steps else total


class Trainer:
    def __init__(self, config: TrainConfig, dataset: Path, metadata: dict[str, str] | None = None,
                 on_step: Callable[[Step], None] | None = None, on_event: Callable[[str], None] | None = None):
        self.config, self.dataset = config, Path(dataset)
        self.metadata = metadata or {}
        self.on_step = on_step or (lambda s: None)
        self.say = on_event or (lambda msg: None)
        self.output = config.path(config.output_dir) or Path("output")

    def run(self, resume: bool = False) -> Result:
        s = self._prepare()
        if resume:
            self._resume(s)
        try:
            self._loop(s)
        except KeyboardInterrupt:  # save where we are, so --resume continues from here
            self._save(s, s.epoch, s.batch, lora=False)
            s.monitor.write(s.step, s.epoch, status="interrupted")
            s.result.interrupted = True
        else:
            s.monitor.write(s.step, s.epoch, status="done")
        s.result.steps = s.step
        s.result.cache_hits, s.result.cache_misses = s.cache.hits, s.cache.misses
        return s.result

    def _prepare(self) -> _Session:
        """Models, data, caches, the LoRA and its optimizer."""
        import torch

        from trainer import shim
        from trainer.encode import Cache, encode_text, fill_latent_cache
        from trainer.lora import add_lora, load_comfy_lora
        from trainer.models import load_anima

        c = self.config
        device, weights_dtype, amp = pick_device(c)
        shim.install()
        random.seed(c.seed)
        torch.manual_seed(c.seed)
        self.output.mkdir(parents=True, exist_ok=True)
        save_resolved(c, self.output)
        samples = load_samples(self.dataset, c.resolution)
        self.say(f"{len(samples)} images in {len({x.bucket for x in samples})} bucket(s)")
        parts = load_anima(c, device, weights_dtype)
        cache = Cache(c.path(c.cache_dir) or self.output / "cache", parts.identity)
        if c.cache_latents:
            encoded = fill_latent_cache(parts, samples, cache, c.flip_augment, device)
            self.say(f"latents: {encoded} encoded, {len(samples) * (2 if c.flip_augment else 1) - encoded} from cache")
        contexts: dict[str, object] = {}
        if not c.shuffle_caption and c.tag_dropout == 0:  # the text never changes: encode each caption once
            for text in {training_text(x.caption) for x in samples}:
                ctx = cache.text(text, c.max_sequence_length)
                if ctx is None:
                    ctx = encode_text(parts, [text], c.max_sequence_length, device)[0]
                    cache.put_text(text, c.max_sequence_length, ctx)
                contexts[text] = ctx
        prompts = [encode_text(parts, [p], c.max_sequence_length, device) for p in c.sample_prompts]
        negative = encode_text(parts, [c.sample_negative_prompt], c.max_sequence_length, device) if prompts else None
        if contexts and c.cache_latents:  # nothing left for the text models to do on the GPU
            parts.text_encoder.to("cpu")
            parts.text_conditioner.to("cpu")
        params = add_lora(parts.transformer, c.lora_rank, c.alpha)
        if c.resume_lora:
            load_comfy_lora(parts.transformer, c.path(c.resume_lora))
        if c.grad_checkpoint:
            parts.transformer.enable_gradient_checkpointing()
        parts.transformer.train()
        total = total_steps(c, samples)
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate)
        return _Session(rng=random.Random(c.seed), parts=parts, samples=samples, cache=cache, contexts=contexts,
                        prompts=prompts, negative=negative, params=params, optimizer=optimizer, device=device,
                        dtype=weights_dtype, amp=amp, result=Result(total_steps=total),
                        monitor=Monitor(self.output / "state.json", total, c.epochs,
                                        extra={"dataset_hash": self.metadata.get("capcheck_dataset_hash")}))

    def _resume(self, s: _Session) -> None:
        import torch
        from peft.utils import set_peft_model_state_dict

        saved = state_path(self.output, self.config.output_name)
        if not saved.exists():
            raise TrainError(saved, "nothing to resume from (no saved state)")
        state = load_state(saved)
        set_peft_model_state_dict(s.parts.transformer, state["lora"], adapter_name="default")
        s.optimizer.load_state_dict(state["optimizer"])
        s.step, s.epoch, s.batch = state["step"], state["epoch"], state["batch"]
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        s.rng.setstate(state["data_rng"])
        s.monitor.losses = state.get("losses", [])
        s.monitor.first_step = s.result.resumed_from = s.step
        self.say(f"resumed at step {s.step} (epoch {s.epoch}, batch {s.batch})")

    def _loop(self, s: _Session) -> None:
        import torch

        c = self.config
        window: list[tuple[float, int]] = []
        start_epoch, skip = s.epoch, s.batch
        for epoch in range(start_epoch, c.epochs + 1):
            s.epoch, s.batch = epoch, skip if epoch == start_epoch else 0
            batches = epoch_batches(s.samples, c.repeats, c.batch_size, c.seed, epoch)
            for b in range(s.batch, len(batches)):
                if c.max_steps and s.step >= c.max_steps:
                    break
                loss = self._micro_step([s.samples[i] for i in batches[b]], s, s.rng)
                (loss / c.grad_accum).backward()
                s.result.losses.append(loss.item())
                if (b + 1) % c.grad_accum and b + 1 < len(batches):
                    continue
                torch.nn.utils.clip_grad_norm_(s.params, c.max_grad_norm)
                s.optimizer.step()
                s.optimizer.zero_grad(set_to_none=True)
                s.step += 1
                s.batch = b + 1
                s.monitor.losses.append([s.step, round(loss.item(), 6)])
                window = [*window[-49:], (time.monotonic(), s.step)]
                info = s.monitor.write(s.step, epoch, lr=c.learning_rate)
                self.on_step(Step(s.step, s.result.total_steps, epoch, loss.item(), _speed(window) or info["speed"],
                                  info["eta_seconds"]))
                if c.save_every_steps and s.step % c.save_every_steps == 0:
                    self._save(s, epoch, b + 1, by_step=True)
            last = epoch == c.epochs or bool(c.max_steps and s.step >= c.max_steps)
            if last or (c.save_every and epoch % c.save_every == 0):
                self._save(s, epoch + 1, 0, finished_epoch=epoch)
            if c.sample_every and s.prompts and (epoch % c.sample_every == 0 or last):
                self._samples(s, epoch)
            if last:
                break

    def _micro_step(self, batch: list[Sample], s: _Session, rng: random.Random):
        import torch

        from trainer.encode import encode_images, encode_text
        from trainer.objective import flow_loss, noisy, sample_t

        c = self.config
        parts, cache, contexts, device, amp = s.parts, s.cache, s.contexts, s.device, s.amp
        flips = [c.flip_augment and rng.random() < 0.5 for _ in batch]
        latents = []
        for sample, flip in zip(batch, flips, strict=True):
            latent = cache.latent(sample, flip) if c.cache_latents else None
            if latent is None:
                latent = encode_images(parts.vae, image_tensor(sample, flip).unsqueeze(0), device)[0]
            latents.append(latent.to(device, torch.float32))
        x0 = torch.stack(latents)
        texts = [training_text(x.caption, c.keep_tokens, c.shuffle_caption, c.tag_dropout, rng) for x in batch]
        if contexts:
            ctx = _pad([contexts[t].to(device) for t in texts])
        else:
            ctx = _pad(list(encode_text(parts, texts, c.max_sequence_length, device)))
        noise = torch.randn_like(x0)
        t = sample_t(len(batch), c.timestep_shift, device=device)
        transformer = parts.transformer
        height, width = batch[0].bucket[1], batch[0].bucket[0]
        padding = torch.zeros(1, 1, height, width, device=device, dtype=transformer.dtype)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            prediction = transformer(hidden_states=noisy(x0, noise, t).to(transformer.dtype), timestep=t,
                                     encoder_hidden_states=ctx.to(transformer.dtype), padding_mask=padding,
                                     return_dict=False)[0]
        return flow_loss(prediction, x0, noise)

    def _save(self, s: _Session, epoch: int, batch: int, finished_epoch: int | None = None, by_step: bool = False,
              lora: bool = True) -> None:
        """The LoRA (unless only the state is wanted) and the state to resume from:
        `epoch` and `batch` are where the run would continue."""
        import torch
        from peft.utils import get_peft_model_state_dict

        from trainer.lora import save_lora

        c = self.config
        transformer = s.parts.transformer
        if lora:
            done_epoch = finished_epoch if finished_epoch is not None else epoch
            path = lora_path(self.output, c.output_name, done_epoch, s.step if by_step else None)
            meta = {"format": "comfyui-anima-lora", "capcheck_config": json.dumps(c.resolved()),
                    "capcheck_step": str(s.step), "capcheck_epoch": str(done_epoch), "lora_rank": str(c.lora_rank),
                    "lora_alpha": str(c.alpha), **self.metadata}
            dtype = torch.bfloat16 if c.mixed_precision == "bf16" and s.device.type == "cuda" else None
            s.result.loras.append(save_lora(path, transformer, c.alpha, meta, dtype))
        save_state(state_path(self.output, c.output_name), lora=get_peft_model_state_dict(transformer),
                   optimizer=s.optimizer.state_dict(), epoch=epoch, batch=batch, step=s.step,
                   torch_rng=torch.get_rng_state(), python_rng=random.getstate(), data_rng=s.rng.getstate(),
                   losses=s.monitor.losses[-5000:])

    def _samples(self, s: _Session, epoch: int) -> None:
        from trainer.sample import sample

        c = self.config
        folder = self.output / "samples"
        folder.mkdir(exist_ok=True)
        for k, ctx in enumerate(s.prompts):
            image = sample(s.parts.transformer, s.parts.vae, ctx, s.negative, width=c.sample_width,
                           height=c.sample_height, steps=c.sample_steps, cfg=c.sample_cfg_scale, seed=c.sample_seed,
                           timestep_shift=c.timestep_shift, device=s.device, dtype=s.dtype)
            path = folder / f"{c.output_name}_epoch{epoch:03d}_{k}.png"
            image.save(path)
            s.result.samples.append(path)
            s.monitor.samples.append(str(path))
