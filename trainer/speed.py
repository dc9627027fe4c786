"""Memory against speed in the DiT: gradient checkpointing per block, and regional compilation.

Checkpointing a block frees its saved activations and recomputes them in
the backward pass: about a third more work for that block. `auto` (the
default) measures what one block saves at the run's largest bucket, and
checkpoints only as many blocks as the free VRAM requires: none when they
all fit, which is most runs on an 80 GB card. `true` checkpoints every
block (the least memory), `false` none.

`compile: true` compiles each transformer block with `torch.compile`
(regional compilation): the 28 blocks share one graph, and a new bucket
shape recompiles that block graph, not the whole model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

GiB = 2**30


def saved_bytes_per_block(transformer, forward: Callable[[], object]) -> int:
    """Bytes autograd saves for the backward in the largest DiT block during `forward()`.

    Measured rather than estimated (attention kernels, adaLN and the LoRA all
    differ): every tensor saved for the backward inside a block is counted
    once (frozen weights are not activations), held only until that block
    ends, and the graph is dropped unrun, so the probe costs one block's
    activations, not the model's."""
    import torch

    weights = {p.untyped_storage().data_ptr() for p in transformer.parameters()}
    counts: list[int] = []
    held: dict[int, object] = {}
    inside = [False]

    def pack(tensor):
        storage = tensor.untyped_storage()  # views of one tensor share it: count it once
        key = storage.data_ptr()
        if inside[0] and key not in weights and key not in held:
            held[key] = tensor  # alive until the block ends, so its address is not reused meanwhile
            counts[-1] += storage.nbytes()
        return None

    def unpack(_):
        raise RuntimeError("the checkpointing probe's graph is not for a backward pass")

    def enter(module, args):
        inside[0] = True
        counts.append(0)

    def leave(module, args, output):
        inside[0] = False
        held.clear()

    hooks = [h for block in transformer.transformer_blocks
             for h in (block.register_forward_pre_hook(enter), block.register_forward_hook(leave))]
    was = transformer.gradient_checkpointing
    transformer.gradient_checkpointing = False
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            forward()
    finally:
        transformer.gradient_checkpointing = was
        for h in hooks:
            h.remove()
    return max(counts, default=0)


def blocks_to_checkpoint(per_block: int, blocks: int, budget: int) -> int:
    """How many blocks must recompute for the others' activations to fit `budget` bytes."""
    if per_block <= 0 or per_block * blocks <= budget:
        return 0
    return min(blocks, math.ceil((per_block * blocks - max(budget, 0)) / per_block))


def activation_budget(free: int, trainable_bytes: int, per_block: int) -> int:
    """Bytes the saved activations may take: free VRAM, less the LoRA's gradients and AdamW's two
    moments (allocated at the first step), the backward's working set (about two blocks'
    activations: the one being recomputed and its gradients) and a 10% margin for the allocator."""
    return int(0.9 * (free - 3 * trainable_bytes) - 2 * per_block)


def free_vram(device) -> int:
    """Free bytes on the GPU, counting what torch holds cached but unused."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def checkpoint_blocks(transformer, count: int) -> None:
    """Checkpoint the first `count` DiT blocks (diffusers calls this function for every block
    when checkpointing is on; the others run as usual)."""
    import torch.utils.checkpoint

    if count <= 0:
        transformer.disable_gradient_checkpointing()
        return
    chosen = {id(block) for block in list(transformer.transformer_blocks)[:count]}

    def run(block, *args):
        if id(block) in chosen:
            return torch.utils.checkpoint.checkpoint(block.__call__, *args, use_reentrant=False)
        return block(*args)

    transformer.enable_gradient_checkpointing(run)


def choose_checkpointing(mode: bool | str, transformer, device, probe: Callable[[], object] | None,
                         batch: int) -> tuple[int, str]:
    """(blocks to checkpoint, why) for `grad_checkpoint: auto | true | false`. `probe` runs
    one forward of a single sample at the largest bucket."""
    blocks = len(transformer.transformer_blocks)
    if mode is True:
        return blocks, f"gradient checkpointing: all {blocks} blocks"
    if mode is False:
        return 0, "gradient checkpointing: off"
    if device.type != "cuda" or probe is None:
        return 0, "gradient checkpointing: auto, off (not on a GPU)"
    per_block = saved_bytes_per_block(transformer, probe) * batch
    trainable = sum(p.numel() * p.element_size() for p in transformer.parameters() if p.requires_grad)
    free = free_vram(device)
    count = blocks_to_checkpoint(per_block, blocks, activation_budget(free, trainable, per_block))
    return count, (f"gradient checkpointing: auto, {count} of {blocks} blocks (activations {per_block / GiB:.1f} "
                   f"GiB per block at batch {batch}, {free / GiB:.1f} GiB free)")


def compile_blocks(transformer, backend: str = "inductor") -> int:
    """torch.compile each DiT block in place; returns how many. (The tests pass `aot_eager`:
    the same graph capture and autograd, without inductor's minutes of C++ builds on a CPU.)"""
    blocks = list(transformer.transformer_blocks)
    for block in blocks:
        block.compile(backend=backend)
    return len(blocks)
