"""The Anima LoRA trainer on a tiny random Anima (CPU): training, the saved
LoRA through diffusers' own Anima conversion, resume, single-file loading."""

import json
import math

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from trainer.anima import BLOCK_TARGETS
from trainer.config import TrainConfig, load_config
from trainer.loop import Trainer
from trainer.lora import add_lora, from_comfy


def config(tiny_anima, out, **over) -> TrainConfig:
    base = dict(model_path=str(tiny_anima), resolution=256, epochs=2, repeats=1, batch_size=2, lora_rank=4,
                lora_alpha=2.0, learning_rate=5e-3, mixed_precision="no", device="cpu", output_dir=str(out),
                output_name="tiny", max_sequence_length=64, seed=3, sample_every=1,
                sample_prompts=["1girl, keichan, smile"], sample_steps=2, sample_width=64, sample_height=64)
    return TrainConfig(**{**base, **over})


def comfy_keys(num_blocks: int) -> set[str]:
    return {f"diffusion_model.blocks.{b}.{name}.{suffix}" for b in range(num_blocks) for name in BLOCK_TARGETS.values()
            for suffix in ("lora_A.weight", "lora_B.weight", "alpha")}


@pytest.fixture(scope="module")
def trained(tiny_anima, tmp_path_factory):
    from PIL import Image

    from conftest import CAPTION

    root = tmp_path_factory.mktemp("train")
    data = root / "data"
    data.mkdir()
    for i, size in enumerate([(256, 256), (256, 256), (192, 320), (192, 320)]):
        Image.effect_mandelbrot(size, (-2 + 0.2 * i, -1.5, 1, 1.5), 20 + i).convert("RGB").save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(CAPTION.format(framing="portrait"))
    cfg = config(tiny_anima, root / "out")
    result = Trainer(cfg, data, {"capcheck_dataset_hash": "abc"}).run()
    return cfg, data, result


def test_two_epochs_train_and_write_comfyui_loras(trained):
    _, _, result = trained
    assert result.steps == result.total_steps == 4  # 2 buckets x 1 batch of 2, x 2 epochs
    assert all(math.isfinite(x) for x in result.losses) and len(result.losses) == 4
    assert [p.name for p in result.loras] == ["tiny_epoch001.safetensors", "tiny_epoch002.safetensors"]
    final = load_file(str(result.loras[-1]))
    assert set(final) == comfy_keys(2)  # exactly 2 blocks x 10 modules, ComfyUI names
    assert final["diffusion_model.blocks.0.self_attn.q_proj.lora_A.weight"].shape == (4, 32)
    assert float(final["diffusion_model.blocks.1.mlp.layer2.alpha"]) == 2.0
    assert any(final[k].abs().sum() > 0 for k in final if "lora_B" in k)  # it learned something
    with safe_open(str(result.loras[-1]), "pt") as fh:
        meta = fh.metadata()
    assert meta["capcheck_dataset_hash"] == "abc" and json.loads(meta["capcheck_config"])["lora_rank"] == 4
    assert meta["capcheck_epoch"] == "2" and meta["format"] == "comfyui-anima-lora"
    out = result.loras[-1].parent
    state = json.loads((out / "state.json").read_text())
    assert state["status"] == "done" and state["step"] == state["total_steps"] == 4 and len(state["losses"]) == 4
    assert {"speed", "eta", "samples", "epoch"} <= set(state)
    assert [p.name for p in result.samples] == ["tiny_epoch001_0.png", "tiny_epoch002_0.png"]
    assert yaml.safe_load((out / "tiny_config.yaml").read_text())["lora_rank"] == 4  # resolved config beside


def test_the_lora_loads_into_a_fresh_model_through_diffusers_own_conversion(trained, tiny_anima):
    from diffusers import CosmosTransformer3DModel
    from peft.utils import get_peft_model_state_dict

    from trainer import shim

    shim.install()
    cfg, _, result = trained
    comfy = load_file(str(result.loras[-1]))
    weights, alphas = from_comfy(comfy)  # diffusers' _convert_non_diffusers_anima_lora_to_diffusers
    assert all(k.startswith("transformer.transformer_blocks.") for k in [*weights, *alphas])
    fresh = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    torch.manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, 16, 1, 8, 8), timestep=torch.tensor([0.4]),
                  encoder_hidden_states=torch.randn(1, 16, 24), padding_mask=torch.zeros(1, 1, 64, 64), return_dict=False)
    with torch.no_grad():
        base = fresh(**inputs)[0]
    fresh.load_lora_adapter(weights, prefix="transformer", network_alphas=alphas, adapter_name="capcheck")
    loaded = get_peft_model_state_dict(fresh, adapter_name="capcheck")
    assert set(loaded) == {k.removeprefix("transformer.") for k in weights}  # every key consumed
    assert all(torch.equal(loaded[k.removeprefix("transformer.")], v) for k, v in weights.items())
    q = dict(fresh.named_modules())["transformer_blocks.0.attn1.to_q"]
    assert q.scaling["capcheck"] == 2.0 / 4  # alpha / rank, as ComfyUI applies it
    with torch.no_grad():
        after = fresh(**inputs)[0]
    assert not torch.allclose(base, after)  # the LoRA changes the output

    ours = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    add_lora(ours, cfg.lora_rank, cfg.alpha)
    from trainer.lora import load_comfy_lora

    load_comfy_lora(ours, result.loras[-1])
    with torch.no_grad():
        assert torch.allclose(ours(**inputs)[0], after, atol=1e-6)  # diffusers and we agree on the same file


def test_step_zero_is_the_base_model(tiny_anima):
    from diffusers import CosmosTransformer3DModel

    from trainer import shim

    shim.install()
    model = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    inputs = dict(hidden_states=torch.randn(1, 16, 1, 8, 8), timestep=torch.tensor([0.7]),
                  encoder_hidden_states=torch.randn(1, 16, 24), padding_mask=torch.zeros(1, 1, 64, 64), return_dict=False)
    with torch.no_grad():
        before = model(**inputs)[0]
        params = add_lora(model, 8, 8.0)
        assert torch.equal(model(**inputs)[0], before)  # lora_B starts at zero
    assert len(params) == 2 * 10 * 2 and all(p.requires_grad for p in params)
    assert all(not p.requires_grad for n, p in model.named_parameters() if "lora_" not in n)


def test_resume_continues_at_the_right_step(tiny_anima, tiny_dataset, tmp_path):
    full = Trainer(config(tiny_anima, tmp_path / "full", sample_every=0, epochs=3), tiny_dataset).run()
    first = Trainer(config(tiny_anima, tmp_path / "split", sample_every=0, epochs=1), tiny_dataset).run()
    assert first.steps == 2
    resumed = Trainer(config(tiny_anima, tmp_path / "split", sample_every=0, epochs=3), tiny_dataset).run(resume=True)
    assert resumed.resumed_from == 2 and resumed.steps == 6
    assert [p.name for p in resumed.loras] == ["tiny_epoch002.safetensors", "tiny_epoch003.safetensors"]
    a, b = load_file(str(full.loras[-1])), load_file(str(resumed.loras[-1]))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)  # as if never stopped
    assert resumed.losses == full.losses[2:]


def test_resume_without_state_is_a_clear_error(tiny_anima, tiny_dataset, tmp_path):
    from trainer.errors import TrainError

    with pytest.raises(TrainError, match="nothing to resume from"):
        Trainer(config(tiny_anima, tmp_path / "none", sample_every=0), tiny_dataset).run(resume=True)


def test_a_comfyui_single_file_splits_into_transformer_and_adapter(tiny_anima, tmp_path):
    """Write the tiny Anima as a ComfyUI single file (net. keys, llm_adapter.*) and load it back."""
    from diffusers import AnimaTextConditioner, CosmosTransformer3DModel

    from trainer.models import load_single_file_dit

    transformer = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    conditioner = AnimaTextConditioner.from_pretrained(tiny_anima / "text_conditioner")
    comfy = {}
    for key, value in transformer.state_dict().items():  # diffusers -> original Cosmos 2 names (the inverse)
        for new, old in (("transformer_blocks", "blocks"), ("attn1", "self_attn"), ("attn2", "cross_attn"),
                         ("to_out.0", "output_proj"), ("to_q", "q_proj"), ("to_k", "k_proj"), ("to_v", "v_proj"),
                         ("norm_q", "q_norm"), ("norm_k", "k_norm"), ("ff.net.0.proj", "mlp.layer1"),
                         ("ff.net.2", "mlp.layer2"), ("norm1.linear_", "adaln_modulation_self_attn."),
                         ("norm2.linear_", "adaln_modulation_cross_attn."), ("norm3.linear_", "adaln_modulation_mlp."),
                         ("time_embed.t_embedder", "t_embedder.1"), ("time_embed.norm", "t_embedding_norm"),
                         ("patch_embed.proj", "x_embedder.proj.1"), ("norm_out.linear_", "final_layer.adaln_modulation."),
                         ("proj_out", "final_layer.linear")):
            key = key.replace(new, old)
        comfy[f"net.{key}"] = value.contiguous()
    comfy.update({f"net.llm_adapter.{k}": v.contiguous() for k, v in conditioner.state_dict().items()})
    path = tmp_path / "anima-tiny.safetensors"
    save_file(comfy, str(path))
    loaded_t, loaded_c = load_single_file_dit(path, "cpu", torch.float32)
    assert loaded_t.config.num_layers == 2 and loaded_t.config.attention_head_dim == 16
    assert loaded_c.config.num_layers == 1 and loaded_c.config.target_dim == 24
    for ours, theirs in ((loaded_t, transformer), (loaded_c, conditioner)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_preflight_on_this_machine(tiny_anima, tmp_path):
    from trainer.errors import PreflightFailed
    from trainer.preflight import run_preflight

    done = run_preflight(config(tiny_anima, tmp_path / "o"))  # device: cpu, a smoke test
    assert [c.name for c in done][-2:] == ["tokenizers load", "text path"] and all(c.ok for c in done)
    if not torch.cuda.is_available():
        with pytest.raises(PreflightFailed) as exc:
            run_preflight(config(tiny_anima, tmp_path / "o", device="auto"))
        assert exc.value.check == "CUDA" and "NVIDIA GPU" in exc.value.fix
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"transformer_path": str(tmp_path / "missing.safetensors"), "device": "cpu",
                                   "vae_path": str(tmp_path), "text_encoder_path": str(tmp_path),
                                   "t5_tokenizer_path": str(tmp_path)}))
    with pytest.raises(PreflightFailed) as exc:
        run_preflight(load_config(bad))
    assert exc.value.check == "model files" and "missing.safetensors: no such file" in exc.value.problem
