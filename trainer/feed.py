"""Batches from disk to the GPU: a DataLoader over one epoch's batch order, and one batch of lookahead.

Each item is one batch: its cached latents (or its images, when latents are
not cached), and its captions as this step sees them (flip, shuffle, tag
dropout). With `num_workers` > 0 the reads, image decoding and caption
augmentation run in worker processes, off the training thread; on CUDA the
tensors come back in pinned memory, so the copy to the GPU does not block.

A sample's randomness (flip, shuffled tags, dropped tags, and the key that
seeds its noise and timestep in the step) comes from its own generator
seeded by (seed, epoch, batch, position in the batch): the same whichever
process makes it and however many share the batch, and a resumed run needs
only the epoch and batch to continue. With several processes each item
holds only this process's share of the batch (`positions`).

`ahead` moves the next batch to the GPU (and encodes it, where latents or
text are not cached) before the current step is launched, so a step never
waits for its inputs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator

from trainer.data import Sample, image_tensor, training_text
from trainer.encode import Cache


def pad(contexts):
    """Stack (L_i, D) contexts into (B, max L, D), zero-padded (as the conditioner pads)."""
    import torch

    length = max(c.shape[0] for c in contexts)
    return torch.stack([torch.nn.functional.pad(c, (0, 0, 0, length - c.shape[0])) for c in contexts])


class EpochBatches:
    """A map-style dataset: item k is batch `start + k` of the epoch's order."""

    def __init__(self, samples: list[Sample], order: list[list[int]], start: int, *, epoch: int, config,
                 cache: Cache, contexts: dict, share=list):
        self.samples, self.order, self.start, self.epoch = samples, order, start, epoch
        self.c, self.cache, self.contexts = config, cache, contexts
        self.share = share  # positions -> this process's positions (`Rank.share`)

    def __len__(self) -> int:
        return len(self.order) - self.start

    def __getitem__(self, k: int) -> dict:
        import torch

        c, index = self.c, self.start + k
        positions = self.share(range(len(self.order[index])))
        rngs = [random.Random(f"{c.seed}:{self.epoch}:{index}:{p}") for p in positions]
        batch = [self.samples[self.order[index][p]] for p in positions]
        keys = [rng.getrandbits(63) for rng in rngs]
        flips = [c.flip_augment and rng.random() < 0.5 for rng in rngs]
        latents = [self.cache.latent(s, f) if c.cache_latents else None for s, f in zip(batch, flips, strict=True)]
        texts = [training_text(s.caption, c.keep_tokens, c.shuffle_caption, c.tag_dropout, rng)
                 for s, rng in zip(batch, rngs, strict=True)]
        item = {"index": index, "texts": texts, "latents": None, "pixels": None, "context": None, "keys": keys,
                "size": len(self.order[index])}
        if not batch:  # this process has no share of this batch (a batch smaller than the process count)
            return item
        if all(x is not None for x in latents):
            item["latents"] = torch.stack(latents).float()
        else:  # not cached: the training process encodes them with the VAE
            item["pixels"] = torch.stack([image_tensor(s, f) for s, f in zip(batch, flips, strict=True)])
        if self.contexts:  # captions that never change were encoded once, before training
            item["context"] = pad([self.contexts[t] for t in texts])
        return item


def loader(dataset: EpochBatches, num_workers: int, device):
    """One epoch's items, in order. The generator keeps the DataLoader from drawing its worker
    seed from the global torch RNG, which would shift the noise stream on every new epoch."""
    import torch
    from torch.utils.data import DataLoader

    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(0),
                      persistent_workers=False, prefetch_factor=4 if num_workers else None)


def to_device(item: dict, parts, config, device):
    """A loader item as a step's Batch on `device`: encoded with the VAE or text models where not cached."""
    import torch

    from trainer.encode import encode_images, encode_text
    from trainer.step import Batch

    if not item["keys"]:
        return Batch(None, None, item["index"], [], item["size"])
    if item["latents"] is not None:
        x0 = item["latents"].to(device, torch.float32, non_blocking=True)
    else:
        x0 = encode_images(parts.vae, item["pixels"], device).float()
    if item["context"] is not None:
        context = item["context"].to(device, non_blocking=True)
    else:
        context = encode_text(parts, item["texts"], config.max_sequence_length, device)
    return Batch(x0, context, item["index"], item["keys"], item["size"])


def ahead(items: Iterable, load: Callable) -> Iterator:
    """`load` each item one step early: the next batch's copy and encoding are queued before the
    caller runs the current step."""
    it = iter(items)
    following = next(it, None)
    if following is None:
        return
    following = load(following)
    for item in it:
        current, following = following, load(item)
        yield current
    yield following
