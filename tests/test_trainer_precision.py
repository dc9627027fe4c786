"""Precision on the GPU's code path, run on the CPU: `mixed_precision: bf16` puts the base
weights in bf16 under bf16 autocast on either device, so these tests exercise the dtypes a
GPU run uses. The LoRA, its gradients and AdamW's state must stay fp32."""

import pytest
import torch
from safetensors.torch import load_file

from trainer.anima import TINY_TRANSFORMER
from trainer.config import TrainConfig
from trainer.lora import add_lora
from trainer.step import Batch, Stepper, compute_dtype


def tiny_model(mixed_precision: str):
    from diffusers import CosmosTransformer3DModel

    from trainer import shim

    shim.install()
    torch.manual_seed(0)
    return CosmosTransformer3DModel(**TINY_TRANSFORMER).to(compute_dtype(mixed_precision))


def train(model, mixed_precision: str, steps: int = 8, lr: float = 2e-5):
    params = add_lora(model, 4, 4.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_A" in n}
    stepper = Stepper(model, params, lr=lr, max_grad_norm=1.0, timestep_shift=3.0, mixed_precision=mixed_precision,
                      device=torch.device("cpu"))
    generator = torch.Generator().manual_seed(1)
    losses = [stepper([Batch(torch.randn(2, 16, 1, 8, 8, generator=generator),
                             torch.randn(2, 16, 24, generator=generator))]) for _ in range(steps)]
    after = dict(model.named_parameters())
    moved = sum(int((after[n].detach() != v).sum()) for n, v in before.items()) / sum(v.numel() for v in before.values())
    return stepper, params, losses, moved


def test_bf16_trains_an_fp32_lora_on_bf16_weights_and_nearly_every_lora_a_entry_moves():
    model = tiny_model("bf16")
    stepper, params, losses, moved = train(model, "bf16")
    base = dict(model.named_parameters())["transformer_blocks.0.attn1.to_q.base_layer.weight"]
    assert base.dtype == torch.bfloat16 and not base.requires_grad  # frozen, in the compute dtype
    assert params and all(p.dtype == torch.float32 for p in params)
    state = [v for s in stepper.optimizer.state.values() for k, v in s.items() if k != "step"]
    assert len(state) == 2 * len(params) and all(v.dtype == torch.float32 for v in state)  # both AdamW moments
    assert all(torch.isfinite(loss) for loss in losses)
    # At lr 2e-5 a bf16 LoRA loses most updates to rounding (about 4% of entries moved in
    # 8 steps); in fp32 every entry that got a gradient moves. Step 1 moves only lora_B
    # (lora_A's gradient is zero while lora_B is), so 7 steps move lora_A.
    assert moved > 0.95, f"only {moved:.1%} of lora_A entries moved"


def test_gradients_are_fp32_under_bf16_autocast():
    model = tiny_model("bf16")
    params = add_lora(model, 4, 4.0)
    stepper = Stepper(model, params, lr=2e-5, max_grad_norm=1.0, timestep_shift=3.0, mixed_precision="bf16",
                      device=torch.device("cpu"))
    stepper.loss(Batch(torch.randn(1, 16, 1, 8, 8), torch.randn(1, 16, 24))).backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in params)


def test_fp16_has_a_grad_scaler_and_no_means_fp32():
    model = tiny_model("fp16")
    stepper, params, losses, moved = train(model, "fp16")
    assert stepper.scaler.is_enabled() and stepper.scaler.get_scale() > 1
    assert dict(model.named_parameters())["transformer_blocks.0.ff.net.2.base_layer.weight"].dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in params) and moved > 0.95 and all(torch.isfinite(x) for x in losses)

    plain = tiny_model("no")
    stepper, _, _, moved = train(plain, "no")
    assert not stepper.scaler.is_enabled() and not stepper.autocast and moved > 0.95
    assert all(p.dtype == torch.float32 for p in plain.parameters())


@pytest.mark.parametrize("save_precision, dtype", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_a_bf16_run_end_to_end_saves_in_the_chosen_precision(tiny_anima, tiny_dataset, tmp_path, save_precision,
                                                             dtype):
    from trainer.loop import Trainer

    cfg = TrainConfig(model_path=str(tiny_anima), resolution=256, epochs=1, batch_size=2, lora_rank=4,
                      learning_rate=1e-3, mixed_precision="bf16", device="cpu", output_dir=str(tmp_path / "out"),
                      output_name="bf", max_sequence_length=64, save_precision=save_precision)
    result = Trainer(cfg, tiny_dataset).run()
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    saved = load_file(str(result.loras[-1]))
    assert {v.dtype for v in saved.values()} == {dtype}
    assert any(v.abs().sum() > 0 for k, v in saved.items() if "lora_B" in k)
