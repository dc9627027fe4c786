"""One optimizer step: the function the training loop calls and bench/train_bench.py times.

Precision follows diffusers' training recipe: the frozen base weights are in
the compute dtype, the LoRA's weights, their gradients and AdamW's moments
are fp32 (`lora.add_lora`), and the forward runs under autocast, so the
LoRA's matmuls run in the compute dtype too. `mixed_precision: bf16` takes
this same path on a CPU (bf16 weights + bf16 autocast), so the test suite
exercises the GPU's dtypes. fp16 adds a GradScaler: fp16's narrow range
would flush small gradients to zero.

Several processes (`trainer.dist`): each takes its share of the global
batch, its loss is the sum of its samples' losses over the global batch
size, and the gradients (with the loss) are summed over the processes in
one all-reduce before clipping, so every process takes the same AdamW step
as one process on the whole batch would. A sample's noise and timestep come
from its own generator, seeded by its key (seed, epoch, batch, position),
so they do not depend on which process drew it.

The step never waits for the GPU: the loss it returns is a device tensor,
and the loop reads a window of them every `log_every` steps. (Gradient
clipping computes its norm on the device; only fp16's scaler reads a flag.)
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from trainer.errors import TrainError

COMPUTE = {"bf16": "bfloat16", "fp16": "float16", "no": "float32"}


def pick_device(config):
    import torch

    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        if config.device == "auto":
            raise TrainError(None, "no CUDA GPU: training an Anima LoRA needs one (device: cpu only for smoke tests)")
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainError(None, "device: cuda, but torch sees no CUDA GPU")
    return torch.device("cuda")


def compute_dtype(mixed_precision: str):
    """The dtype of the frozen weights and of autocast."""
    import torch

    return getattr(torch, COMPUTE[mixed_precision])


@dataclass
class Batch:
    """One micro-batch on the training device."""

    x0: object  # clean latents (B, 16, 1, h, w), fp32; None: this process's share of the batch is empty
    context: object  # text conditioning (B, L, D)
    index: int = 0  # its position in the epoch's batch order
    keys: list[int] | None = None  # one seed per sample for its noise and timestep (None: the device's stream)
    size: int | None = None  # the global batch's size, over every process (None: B)


class Stepper:
    """Forward, loss, backward for each micro-batch, then clip and AdamW: one call, one optimizer step."""

    def __init__(self, transformer, params: list, *, lr: float, max_grad_norm: float, timestep_shift: float,
                 mixed_precision: str, device, rank=None):
        import torch

        from trainer.dist import Rank

        self.transformer, self.params, self.device = transformer, params, device
        self.rank = rank or Rank()
        self.max_grad_norm, self.timestep_shift = max_grad_norm, timestep_shift
        self.dtype = compute_dtype(mixed_precision)
        self.autocast = mixed_precision != "no"
        # fused: one kernel for all 280 LoRA pairs instead of several per tensor (CUDA only).
        self.optimizer = torch.optim.AdamW(params, lr=lr, fused=device.type == "cuda")
        self.scaler = torch.amp.GradScaler(device.type, enabled=mixed_precision == "fp16")
        self._padding: dict[tuple[int, int], object] = {}

    def loss(self, batch: Batch):
        """The rectified-flow loss of one micro-batch (fp32 scalar, on the device): the sum of its
        samples' losses over the global batch size, the batch mean when the batch is all here."""
        import torch

        from trainer.objective import flow_loss, noisy, sample_t, shift

        x0 = batch.x0
        if batch.keys is None:
            noise = torch.randn_like(x0)
            t = sample_t(x0.shape[0], self.timestep_shift, device=self.device)
        else:  # per sample: the same draw whichever process has it
            gens = [torch.Generator(self.device).manual_seed(key) for key in batch.keys]
            noise = torch.stack([torch.randn(x0.shape[1:], generator=g, device=self.device) for g in gens])
            n = torch.cat([torch.randn(1, generator=g, device=self.device) for g in gens])
            t = shift(torch.sigmoid(n), self.timestep_shift)
        height, width = x0.shape[-2] * 8, x0.shape[-1] * 8
        padding = self._padding.get((height, width))
        if padding is None:  # the DiT's (all-zero) padding mask, in pixels: one per bucket
            padding = self._padding.setdefault((height, width), torch.zeros(1, 1, height, width, device=self.device,
                                                                            dtype=self.dtype))
        # mixed_precision: no opens no autocast at all (which also lets bench count FLOPs on the meta device)
        with torch.autocast(self.device.type, dtype=self.dtype) if self.autocast else contextlib.nullcontext():
            prediction = self.transformer(hidden_states=noisy(x0, noise, t).to(self.dtype), timestep=t,
                                          encoder_hidden_states=batch.context.to(self.dtype), padding_mask=padding,
                                          return_dict=False)[0]
        return flow_loss(prediction, x0, noise).sum() / (batch.size or x0.shape[0])

    def __call__(self, micro: list[Batch]):
        """One optimizer step over `micro` (grad_accum micro-batches); returns their mean loss, on the device."""
        import torch

        total = torch.zeros((), device=self.device)
        for batch in micro:
            if batch.x0 is None:  # this process has no sample of this batch: it adds zero gradients
                continue
            loss = self.loss(batch)
            self.scaler.scale(loss / len(micro)).backward()
            total = total + loss.detach()
        if self.rank.world > 1:
            total = self._sum_over_processes(total)
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return total / len(micro)

    def _sum_over_processes(self, total):
        """Gradients and loss summed over the processes, in one all-reduce; returns the summed loss."""
        import torch

        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = self.rank.sum(torch.cat([*(g.reshape(-1) for g in grads), total.reshape(1)]))
        offset = 0
        for p, g in zip(self.params, grads, strict=True):
            p.grad = flat[offset:offset + g.numel()].view_as(g)
            offset += g.numel()
        return flat[-1]

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
