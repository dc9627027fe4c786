"""Rectified flow, as Anima (a Cosmos-Predict2 DiT) was trained.

    x_t = (1 - t) x0 + t eps,   target = eps - x0,   loss = MSE

t = sigmoid(n), n ~ N(0, 1) (logit-normal: most samples in the middle, where
the model learns most), then shifted toward noise, t' = s t / (1 + (s - 1) t)
with s = 3.0 by default as AnimaLoraToolkit does: at 1024 px a DiT spends too
little of its training in the high-noise steps that set composition without
it. The DiT takes t itself as its timestep (diffusers' Anima pipeline passes
sigma = t / num_train_timesteps).
"""

from __future__ import annotations


def shift(t, s: float):
    return s * t / (1 + (s - 1) * t)


def sample_t(batch: int, s: float, generator=None, device="cpu"):
    """Drawn on `device` (its RNG stream) unless a CPU generator is given: a CPU draw copied to
    the GPU would make the host wait for the GPU every step."""
    import torch

    if generator is not None:
        return shift(torch.sigmoid(torch.randn(batch, generator=generator).to(device)), s)
    return shift(torch.sigmoid(torch.randn(batch, device=device)), s)


def noisy(x0, noise, t):
    view = t.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - view) * x0 + view * noise


def velocity_target(x0, noise):
    return noise - x0


def flow_loss(prediction, x0, noise):
    """The MSE of each sample (B,): a batch's loss is their mean, and a process's share their sum."""
    return (prediction.float() - velocity_target(x0, noise).float()).pow(2).flatten(1).mean(1)
