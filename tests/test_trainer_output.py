"""The LoRA file as it travels: metadata without local paths and with the kohya-style
`ss_*` keys other tools show, and, when alpha == rank, no `.alpha` tensors, so diffusers'
plain `pipe.load_lora_weights` loads it unchanged."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from trainer.config import TrainConfig
from trainer.loop import Trainer

SS_KEYS = {"ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_output_name", "ss_base_model_version",
           "ss_resolution", "ss_num_train_images", "ss_num_epochs", "ss_steps", "ss_learning_rate",
           "ss_tag_frequency", "ss_training_started_at"}


@pytest.fixture(scope="module")
def run(tiny_anima, tmp_path_factory):
    from PIL import Image

    from conftest import CAPTION

    root = tmp_path_factory.mktemp("output")
    data = root / "my dataset"
    data.mkdir()
    for i in range(2):
        Image.effect_mandelbrot((256, 256), (-2 + 0.3 * i, -1.5, 1, 1.5), 20).convert("RGB").save(data / f"{i}.png")
        (data / f"{i}.txt").write_text(CAPTION.format(framing="portrait" if i else "upper body"))
    cfg = TrainConfig(model_path=str(tiny_anima), data_dir=str(data), resolution=256, epochs=1, batch_size=2,
                      lora_rank=4, learning_rate=5e-3, mixed_precision="no", device="cpu",
                      output_dir=str(root / "out"), output_name="keichan", max_sequence_length=64,
                      cache_dir=str(root / "cache"))
    result = Trainer(cfg, data, {"capcheck_dataset_hash": "abc"}).run()
    return cfg, data, result


def test_metadata_has_no_absolute_path_and_the_ss_keys(run, tiny_anima):
    _, data, result = run
    with safe_open(str(result.loras[-1]), "pt") as fh:
        meta = fh.metadata()
    assert all(isinstance(v, str) for v in meta.values())
    for value in meta.values():  # nothing of this machine's file system travels with the file
        for local in (str(tiny_anima), str(data), str(data.parent), str(tiny_anima.parent)):
            assert local not in value
    config = json.loads(meta["capcheck_config"])
    assert config["model_path"] == "anima" and config["data_dir"] == "my dataset" and config["output_dir"] == "out"
    assert config["cache_dir"] == "cache" and config["lora_rank"] == 4
    assert set(meta) >= SS_KEYS
    assert meta["ss_network_dim"] == "4" and meta["ss_network_alpha"] == "4" and meta["ss_output_name"] == "keichan"
    assert meta["ss_resolution"] == "(256, 256)" and meta["ss_num_train_images"] == "2" and meta["ss_steps"] == "1"
    assert meta["ss_num_epochs"] == "1" and meta["ss_learning_rate"] == "0.005"
    assert meta["ss_base_model_version"] == "anima" and meta["ss_network_module"] == "networks.lora_anima"
    frequency = json.loads(meta["ss_tag_frequency"])["my dataset"]
    assert frequency["keichan"] == 2 and frequency["portrait"] == 1 and frequency["upper body"] == 1
    assert not any("close-up portrait" in tag for tag in frequency)  # the NL line is not a tag
    assert float(meta["ss_training_started_at"]) <= float(meta["ss_training_finished_at"])
    assert meta["capcheck_dataset_hash"] == "abc"


def test_alpha_equal_to_rank_writes_no_alpha_and_loads_with_plain_load_lora_weights(run, tiny_anima):
    from diffusers import CosmosTransformer3DModel
    from diffusers.modular_pipelines import AnimaModularPipeline
    from peft.utils import get_peft_model_state_dict

    from trainer import shim
    from trainer.lora import add_lora, load_comfy_lora

    shim.install()
    _, _, result = run
    saved = load_file(str(result.loras[-1]))
    assert saved and not any(k.endswith(".alpha") for k in saved)
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}  # save_precision: bf16 by default

    pipe = AnimaModularPipeline()
    pipe.update_components(transformer=CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer"))
    pipe.load_lora_weights(str(result.loras[-1]), adapter_name="keichan")  # unchanged: no conversion, no alphas
    loaded = get_peft_model_state_dict(pipe.transformer, adapter_name="keichan")
    assert len(loaded) == len(saved) == 2 * 10 * 2
    q = dict(pipe.transformer.named_modules())["transformer_blocks.0.attn1.to_q"]
    assert q.scaling["keichan"] == 1.0  # alpha == rank: what ComfyUI applies without .alpha keys

    ours = CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")
    add_lora(ours, 4, 4.0)
    load_comfy_lora(ours, result.loras[-1])
    inputs = dict(hidden_states=torch.randn(1, 16, 1, 8, 8), timestep=torch.tensor([0.4]),
                  encoder_hidden_states=torch.randn(1, 16, 24), padding_mask=torch.zeros(1, 1, 64, 64),
                  return_dict=False)
    with torch.no_grad():
        assert torch.allclose(pipe.transformer(**inputs)[0], ours(**inputs)[0], atol=1e-6)


def test_the_lora_file_is_readable_by_others_as_the_umask_allows(run):
    """safetensors 0.8 writes 0600: a ComfyUI running as another user could not read the LoRA."""
    import os

    _, _, result = run
    mask = os.umask(0)
    os.umask(mask)
    assert result.loras and all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in result.loras)
