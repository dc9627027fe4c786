"""The training loop: LoRA on the frozen Anima DiT, rectified flow, AdamW.

Flat on purpose: prepare (models, caches, LoRA, stepper), then for each
epoch, for each batch, one call to the step function (`trainer.step`, the
same one bench/train_bench.py times). Every `log_every` steps the losses
are read from the GPU (the only wait), the progress and state.json are
updated; every `save_state_every` steps (default: each epoch), and with
every LoRA saved, the resume state is written. An epoch's batch order and each batch's augmentation
depend only on the seed, the epoch and the batch, and the random streams
are saved with the optimizer, so `--resume` continues at the exact batch
and step a run stopped at, and reaches the same LoRA.

Several processes (`trainer.dist`): every one walks the same batch order,
takes its share of each batch and takes the same optimizer step (the step
sums gradients over them), so N processes train the LoRA one would, and a
state saved at one N resumes at another. Rank 0 alone writes (LoRA files,
state, state.json, samples, the console): `_main_only` methods and the
rank's `main_only` callbacks. The caches are filled in shards, then read by all.
"""

from __future__ import annotations

import functools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from trainer.checkpoint import Monitor, load_state, lora_path, rng_states, save_state, set_rng_states, state_path
from trainer.config import TrainConfig, save_resolved
from trainer.data import Sample, epoch_batches, load_samples
from trainer.dist import Rank
from trainer.errors import TrainError


def _main_only(method):
    """A method that writes: it runs on rank 0 only; the others hold the same LoRA and skip it."""

    @functools.wraps(method)
    def wrapper(self, s, *args, **kwargs):
        return method(self, s, *args, **kwargs) if s.rank.main else None

    return wrapper


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
    losses: list[float] = field(default_factory=list)  # one per optimizer step
    interrupted: bool = False
    cache_hits: int = 0
    cache_misses: int = 0
    checkpointed_blocks: int = 0
    processes: int = 1
    loss_report: dict | None = None  # losses.json's content (trainer.losses), rank 0
    main: bool = True  # rank 0 (the one that wrote the files and prints the summary)


@dataclass
class _Session:
    """Everything one run holds, and where it is."""

    parts: object
    samples: list[Sample]
    cache: object
    contexts: dict
    prompts: list
    negative: object
    stepper: object
    device: object
    rank: Rank
    result: Result
    monitor: Monitor
    started_at: float = field(default_factory=time.time)
    step: int = 0
    epoch: int = 1
    batch: int = 0  # the next batch of `epoch` not yet in an optimizer step
    pending: list = field(default_factory=list)  # (step, loss on the device) not read yet
    window: list = field(default_factory=list)  # (time, step) of recent reads, for it/s
    reported: int = 0  # the last step on_step was told about


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

    def run(self, resume: bool = False, losses_only: bool = False) -> Result:
        """Train (or continue, `resume`); `losses_only`: score a finished run's images, no training."""
        s = self._prepare()
        try:
            if resume or losses_only:
                self._resume(s)
            try:
                if not losses_only:
                    self._loop(s)
                if self.config.image_losses or losses_only:
                    self._image_losses(s)
            except KeyboardInterrupt:  # save where we are, so --resume continues from here
                self._save_state(s)
                self._log(s, status="interrupted")
                s.result.interrupted = True
            else:  # the last epoch saved its LoRA and the state
                self._log(s, status="done")
            s.rank.wait()  # rank 0's files are whole before any process reports done
        finally:
            s.rank.close()
        s.result.steps = s.step
        s.result.cache_hits, s.result.cache_misses = s.cache.hits, s.cache.misses
        return s.result

    def _prepare(self) -> _Session:
        """Models, data, caches, the LoRA, the step function, checkpointing and compilation."""
        import torch

        from trainer import shim
        from trainer.encode import Cache, encode_text, fill_caches
        from trainer.lora import add_lora, load_comfy_lora
        from trainer.models import load_anima
        from trainer.speed import checkpoint_blocks, choose_checkpointing, compile_blocks
        from trainer.step import Stepper, compute_dtype, pick_device

        c = self.config
        device = pick_device(c)
        rank = Rank.start(device)
        device = rank.device(device)
        self.on_step, self.say = rank.main_only(self.on_step), rank.main_only(self.say)
        shim.install()
        random.seed(c.seed)
        torch.manual_seed(c.seed)
        self.output.mkdir(parents=True, exist_ok=True)
        if rank.main:
            save_resolved(c, self.output)
        samples = load_samples(self.dataset, c.resolution)
        self.say(f"{len(samples)} images in {len({x.bucket for x in samples})} bucket(s)"
                 + (f", {rank.world} processes" if rank.world > 1 else ""))
        parts = load_anima(c, device, compute_dtype(c.mixed_precision))
        cache = Cache(c.path(c.cache_dir) or self.output / "cache", parts.identity)
        encoded, contexts = fill_caches(parts, samples, cache, c, device, rank)
        if encoded is not None:
            self.say(f"latents: {encoded} encoded, {len(samples) * (2 if c.flip_augment else 1) - encoded} from cache")
        # Only rank 0 renders samples, so only it needs their prompts.
        prompts = [encode_text(parts, [p], c.max_sequence_length, device) for p in c.sample_prompts if rank.main]
        negative = encode_text(parts, [c.sample_negative_prompt], c.max_sequence_length, device) if prompts else None
        if contexts and c.cache_latents:  # nothing left for the text models to do on the GPU
            parts.text_encoder.to("cpu")
            parts.text_conditioner.to("cpu")
        transformer = parts.transformer
        params = add_lora(transformer, c.lora_rank, c.alpha)
        if c.resume_lora:
            load_comfy_lora(transformer, c.path(c.resume_lora))
        rank.same_start(params)
        transformer.train()
        stepper = Stepper(transformer, params, lr=c.learning_rate, max_grad_norm=c.max_grad_norm,
                          timestep_shift=c.timestep_shift, mixed_precision=c.mixed_precision, device=device,
                          rank=rank)
        widest = max({x.bucket for x in samples}, key=lambda b: b[0] * b[1])
        count, why = choose_checkpointing(c.grad_checkpoint, transformer, device,
                                          lambda: self._probe(stepper, widest), math.ceil(c.batch_size / rank.world))
        checkpoint_blocks(transformer, count)
        self.say(why)
        if c.compile:
            self.say(f"torch.compile: {compile_blocks(transformer)} DiT blocks (the first steps compile)")
        total = total_steps(c, samples)
        return _Session(parts=parts, samples=samples, cache=cache, contexts=contexts, prompts=prompts,
                        negative=negative, stepper=stepper, device=device, rank=rank,
                        result=Result(total_steps=total, checkpointed_blocks=count, processes=rank.world,
                                      main=rank.main),
                        monitor=Monitor(self.output / "state.json" if rank.main else None, total, c.epochs,
                                        extra={"dataset_hash": self.metadata.get("capcheck_dataset_hash")}))

    def _probe(self, stepper, bucket: tuple[int, int]) -> None:
        """One sample's forward at the widest bucket, for `auto` checkpointing; random streams untouched."""
        import torch

        from trainer.step import Batch

        width, height = bucket
        dim = stepper.transformer.config.text_embed_dim
        cuda = [torch.cuda.current_device()] if stepper.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            stepper.loss(Batch(torch.zeros(1, 16, 1, height // 8, width // 8, device=stepper.device),
                               torch.zeros(1, self.config.max_sequence_length, dim, device=stepper.device)))

    def _resume(self, s: _Session) -> None:
        from peft.utils import set_peft_model_state_dict

        saved = state_path(self.output, self.config.output_name)
        if not saved.exists():
            raise TrainError(saved, "nothing to resume from (no saved state)")
        state = load_state(saved)
        set_peft_model_state_dict(s.parts.transformer, state["lora"], adapter_name="default")
        s.stepper.load_state_dict(state)
        s.step, s.epoch, s.batch = state["step"], state["epoch"], state["batch"]
        set_rng_states(state)
        s.monitor.losses = state.get("losses", [])
        s.monitor.first_step = s.result.resumed_from = s.step
        self.say(f"resumed at step {s.step} (epoch {s.epoch}, batch {s.batch})")

    def _loop(self, s: _Session) -> None:
        from trainer.feed import EpochBatches, ahead, loader, to_device

        c = self.config
        for epoch in range(s.epoch, c.epochs + 1):
            start = s.batch if epoch == s.epoch else 0
            s.epoch, s.batch = epoch, start
            order = epoch_batches(s.samples, c.repeats, c.batch_size, c.seed, epoch)
            items = loader(EpochBatches(s.samples, order, start, epoch=epoch, config=c, cache=s.cache,
                                        contexts=s.contexts, share=s.rank.share), c.num_workers, s.device)
            micro = []
            for batch in ahead(items, lambda item: to_device(item, s.parts, c, s.device)):
                if c.max_steps and s.step >= c.max_steps:
                    break
                micro.append(batch)
                if len(micro) < c.grad_accum and batch.index + 1 < len(order):
                    continue
                s.pending.append((s.step + 1, s.stepper(micro)))
                s.step, s.batch, micro = s.step + 1, batch.index + 1, []
                if s.step % c.log_every == 0:
                    self._log(s)
                if c.save_every_steps and s.step % c.save_every_steps == 0:
                    self._save_lora(s, epoch, by_step=True)
                elif c.save_state_every and s.step % c.save_state_every == 0:
                    self._save_state(s)
            if s.batch == len(order):  # the epoch is done: a resume starts the next one
                s.epoch, s.batch = epoch + 1, 0
            last = epoch == c.epochs or bool(c.max_steps and s.step >= c.max_steps)
            self._log(s)
            if last or (c.save_every and epoch % c.save_every == 0):
                self._save_lora(s, epoch)
            elif c.save_state_every is None:
                self._save_state(s)
            if c.sample_every and s.prompts and (epoch % c.sample_every == 0 or last):
                self._samples(s, epoch)
            if last:
                break

    def _read_losses(self, s: _Session) -> None:
        """The pending losses, from the device in one read: the loop's only wait for the GPU."""
        import torch

        if not s.pending:
            return
        values = torch.stack([loss for _, loss in s.pending]).float().tolist()
        for (step, _), value in zip(s.pending, values, strict=True):
            s.result.losses.append(value)
            s.monitor.losses.append([step, round(value, 6)])
        s.pending = []
        s.window = [*s.window[-49:], (time.monotonic(), s.step)]

    def _log(self, s: _Session, status: str = "running") -> None:
        """Read the pending losses, report the last step not reported yet, rewrite state.json."""
        self._read_losses(s)
        epoch = min(s.epoch, self.config.epochs)  # after the last epoch, s.epoch points past it
        info = s.monitor.write(s.step, epoch, status=status, lr=self.config.learning_rate)
        if s.result.losses and s.step > s.reported and status != "interrupted":
            s.reported = s.step
            self.on_step(Step(s.step, s.result.total_steps, epoch, s.result.losses[-1],
                              _speed(s.window) or info["speed"], info["eta_seconds"]))

    def _image_losses(self, s: _Session) -> None:
        """Each image's loss with the final LoRA and without (trainer.losses): each process scores its share."""
        from trainer import losses

        c = self.config
        self.say(f"scoring {len(s.samples)} images with the LoRA and without ({len(losses.TIMESTEPS)} timesteps each)")
        mine = losses.score(s.parts, s.rank.share(s.samples), s.cache, s.contexts, c, s.device, s.stepper.dtype,
                            s.stepper.autocast)
        scores = s.rank.gather(mine)
        lora = (s.result.loras[-1].name if s.result.loras
                else f"{state_path(self.output, c.output_name).name} (step {s.step})")
        s.result.loss_report = losses.report(s.samples, scores, self.dataset, lora)
        if s.rank.main:
            losses.write(self.output, s.result.loss_report)

    @_main_only
    def _save_lora(self, s: _Session, epoch: int, by_step: bool = False) -> None:
        import torch

        from trainer.lora import save_lora
        from trainer.metadata import lora_metadata

        c = self.config
        path = lora_path(self.output, c.output_name, epoch, s.step if by_step else None)
        meta = lora_metadata(c, s.samples, self.dataset, step=s.step, epoch=epoch, total_steps=s.result.total_steps,
                             started_at=s.started_at, extra=self.metadata)
        dtype = torch.bfloat16 if c.save_precision == "bf16" else torch.float32
        s.result.loras.append(save_lora(path, s.parts.transformer, c.lora_rank, c.alpha, meta, dtype))
        self._save_state(s)  # every LoRA is also a point to resume from

    @_main_only
    def _save_state(self, s: _Session) -> None:
        """What `--resume` needs to continue exactly here (`s.epoch`, `s.batch`: the next batch)."""
        from peft.utils import get_peft_model_state_dict

        self._read_losses(s)  # the losses up to here go into the state
        save_state(state_path(self.output, self.config.output_name),
                   lora=get_peft_model_state_dict(s.parts.transformer), **s.stepper.state_dict(), epoch=s.epoch,
                   batch=s.batch, step=s.step, losses=s.monitor.losses[-5000:], **rng_states())

    @_main_only
    def _samples(self, s: _Session, epoch: int) -> None:
        import torch

        from trainer.sample import sample

        c = self.config
        folder = self.output / "samples"
        folder.mkdir(exist_ok=True)
        stepper = s.stepper
        for k, ctx in enumerate(s.prompts):
            with torch.autocast(s.device.type, dtype=stepper.dtype, enabled=stepper.autocast):
                image = sample(s.parts.transformer, s.parts.vae, ctx, s.negative, width=c.sample_width,
                               height=c.sample_height, steps=c.sample_steps, cfg=c.sample_cfg_scale,
                               seed=c.sample_seed, timestep_shift=c.timestep_shift, device=s.device,
                               dtype=stepper.dtype)
            path = folder / f"{c.output_name}_epoch{epoch:03d}_{k}.png"
            image.save(path)
            s.result.samples.append(path)
            s.monitor.samples.append(str(path))
