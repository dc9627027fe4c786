"""The fast paths, checked for sameness on the CPU (their speed is measured by
bench/train_bench.py, never by timers here): selective and `auto` gradient checkpointing,
regional torch.compile, no host read of the loss per step, and the one-batch lookahead."""

from pathlib import Path

import pytest
import torch

from trainer.anima import TINY_TRANSFORMER
from trainer.lora import add_lora
from trainer.speed import (
    blocks_to_checkpoint,
    checkpoint_blocks,
    choose_checkpointing,
    compile_blocks,
    saved_bytes_per_block,
)
from trainer.step import Batch, Stepper

CPU = torch.device("cpu")


def tiny(layers: int = 3):
    from diffusers import CosmosTransformer3DModel

    from trainer import shim

    shim.install()
    torch.manual_seed(0)
    model = CosmosTransformer3DModel(**{**TINY_TRANSFORMER, "num_layers": layers})
    params = add_lora(model, 4, 4.0)
    model.train()
    return model, params, Stepper(model, params, lr=1e-3, max_grad_norm=1.0, timestep_shift=3.0,
                                  mixed_precision="no", device=CPU)


def batch(n: int = 2, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.randn(n, 16, 1, 8, 8, generator=g), torch.randn(n, 16, 24, generator=g))


def saved_bytes(stepper) -> tuple[int, object]:
    """Bytes of activations autograd holds for the backward after one forward (each storage
    once, weights not counted); a checkpointed block holds none of its own."""
    weights = {p.untyped_storage().data_ptr() for p in stepper.transformer.parameters()}
    held = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in weights:
            held[storage.data_ptr()] = (storage.nbytes(), t)  # kept alive: addresses stay unique
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        torch.manual_seed(7)
        loss = stepper.loss(batch())
    return sum(n for n, _ in held.values()), loss


@pytest.mark.parametrize("count", [1, 3])
def test_selective_checkpointing_saves_memory_per_block_and_keeps_the_gradients(count):
    model, params, stepper = tiny()
    plain_bytes, loss = saved_bytes(stepper)
    loss.backward()
    expected = [p.grad.clone() for p in params]
    model.zero_grad(set_to_none=True)

    checkpoint_blocks(model, count)
    fewer_bytes, loss2 = saved_bytes(stepper)
    loss2.backward()
    assert torch.equal(loss, loss2)
    assert all(torch.allclose(p.grad, g, atol=1e-6) for p, g in zip(params, expected, strict=True))
    per_block = saved_bytes_per_block(model, lambda: stepper.loss(batch()))
    assert fewer_bytes < plain_bytes and plain_bytes - fewer_bytes == pytest.approx(count * per_block, rel=0.35)
    checkpoint_blocks(model, 0)
    assert saved_bytes(stepper)[0] == plain_bytes


def test_the_activation_probe_scales_with_the_batch_and_leaves_the_model_as_it_was():
    model, _, stepper = tiny()
    checkpoint_blocks(model, 3)
    one = saved_bytes_per_block(model, lambda: stepper.loss(batch(1)))
    four = saved_bytes_per_block(model, lambda: stepper.loss(batch(4)))
    assert one > 0 and 3.0 < four / one < 4.5  # activations grow with the batch; the LoRA weights do not
    assert model.gradient_checkpointing  # restored


def test_auto_checkpoints_only_as_many_blocks_as_the_memory_needs():
    gib = 2**30
    assert blocks_to_checkpoint(2 * gib, 28, 60 * gib) == 0  # 56 GiB of activations fit
    assert blocks_to_checkpoint(2 * gib, 28, 50 * gib) == 3  # 6 GiB too many: 3 blocks recompute
    assert blocks_to_checkpoint(2 * gib, 28, -5) == 28  # nothing fits: all of them
    model, _, _ = tiny()
    assert choose_checkpointing(True, model, CPU, None, 1)[0] == 3
    assert choose_checkpointing(False, model, CPU, None, 1)[0] == 0
    assert choose_checkpointing("auto", model, CPU, None, 1) == (0, "gradient checkpointing: auto, off (not on a GPU)")


def test_regional_compile_gives_the_same_losses():
    """Each block compiled (dynamo + AOT autograd; `aot_eager` keeps inductor's C++ builds out of CI)."""
    runs = []
    for compiled in (False, True):
        model, params, stepper = tiny(layers=2)
        if compiled:
            assert compile_blocks(model, backend="aot_eager") == 2
        torch.manual_seed(3)
        losses = [float(stepper([batch(seed=k)])) for k in range(2)]
        runs.append((losses, [p.detach().clone() for p in params]))
    (plain, weights), (fast, compiled_weights) = runs
    assert fast == pytest.approx(plain, rel=1e-5)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(weights, compiled_weights, strict=True))


def test_the_loop_reads_losses_from_the_device_every_log_every_steps_only(tiny_anima, tiny_dataset, tmp_path,
                                                                         monkeypatch):
    from trainer.config import TrainConfig
    from trainer.loop import Trainer

    trainer_dir = str(Path(__file__).resolve().parent.parent / "trainer")
    reads = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name):
            import sys

            if sys._getframe(1).f_code.co_filename.startswith(trainer_dir):
                reads.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    cfg = TrainConfig(model_path=str(tiny_anima), resolution=256, epochs=2, batch_size=1, lora_rank=4,
                      learning_rate=1e-3, mixed_precision="no", device="cpu", output_dir=str(tmp_path / "o"),
                      max_sequence_length=64, log_every=4,
                      image_losses=False)  # the per-image losses after the run read floats on purpose, not per step
    steps = []
    result = Trainer(cfg, tiny_dataset, on_step=lambda s: steps.append(s.step)).run()
    assert result.steps == 8 and len(result.losses) == 8 and steps == [4, 8]
    assert reads.count("tolist") == 2 and set(reads) == {"tolist"}  # one read per 4 steps, nothing per step


def test_the_next_batch_is_loaded_before_the_current_one_is_used():
    from trainer.feed import ahead

    events = []
    for item in ahead(range(3), lambda k: events.append(f"load {k}") or k):
        events.append(f"step {item}")
    assert events == ["load 0", "load 1", "step 0", "load 2", "step 1", "step 2"]
