import pytest

from trainer.config import load_config
from trainer.errors import TrainError
from trainer.plan import Plan, guidance

# The first article's keys (AnimaLoraToolkit), as it ran them.
ARTICLE = """
transformer_path: "models/transformers/waiANIMA_v10.safetensors"
vae_path: "models/vae/qwen_image_vae.safetensors"
text_encoder_path: "models/text_encoders"
t5_tokenizer_path: "models/t5_tokenizer"
output_dir: "/workspace/output/keichan-v1"
output_name: "keichan-waianima-v1"
data_dir: "/workspace/datasets/keichan"
resolution: 1024
epochs: 180
learning_rate: 2.0e-5
save_every: 1
sample_every: 1
flip_augment: false
shuffle_caption: false
keep_tokens: 1
rank: 32
repeats: 4
mixed_precision: "bf16"
grad_checkpoint: true
xformers: false
sample_prompt: "masterpiece, best quality, safe, 1girl, solo, keichan"
sample_seed: 42
"""


def test_the_articles_config_loads_unchanged(tmp_path):
    path = tmp_path / "train_keichan_v1.yaml"
    path.write_text(ARTICLE)
    cfg = load_config(path)
    assert cfg.lora_rank == 32 and cfg.alpha == 32.0 and cfg.repeats == 4 and cfg.epochs == 180
    assert cfg.sample_prompts == ["masterpiece, best quality, safe, 1girl, solo, keichan"]
    assert cfg.ignored() == ["xformers (attention is PyTorch SDPA)"]
    assert cfg.path(cfg.vae_path) == tmp_path / "models/vae/qwen_image_vae.safetensors"  # relative to the config
    assert "xformers" not in cfg.resolved() and cfg.resolved()["lora_rank"] == 32


@pytest.mark.parametrize("extra, message", [
    ("lora_rnak: 16\n", "unknown key 'lora_rnak'"),
    ("lora_type: lokr\n", "lokr is not supported: capcheck trains plain LoRA only"),
    ("resolution: 1000\n", "resolution: 1000 is not a multiple of 64"),
    ("repeats: 0\n", "repeats must be at least 1"),
])
def test_bad_keys_name_the_file_and_the_key(tmp_path, extra, message):
    path = tmp_path / "bad.yaml"
    path.write_text(ARTICLE + extra)
    with pytest.raises(TrainError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)


def test_a_model_must_be_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 1\n")
    with pytest.raises(TrainError, match="set model_path"):
        load_config(path)
    path.write_text("transformer_path: x.safetensors\n")
    with pytest.raises(TrainError, match="also set vae_path, text_encoder_path, t5_tokenizer_path"):
        load_config(path)


def test_plan_reproduces_the_article():
    p = Plan(images=91, repeats=4, epochs=180, batch=4, its=0.335, usd_per_hour=0.77)
    assert p.steps_per_epoch == 91 and p.steps == 16_380 and p.exposures == 720
    assert round(p.hours, 2) == 13.58 and round(p.hours) == 14
    assert round(p.cost, 2) == 10.46  # the "≈$11" is 14 h x $0.77 = $10.78: hours rounded first
    assert round(p.images_per_second, 2) == 1.34  # the article's "≈1.3 images/s"
    assert "in the other-model range" in guidance(720)[-1]
    assert "enough for same-model data" in guidance(80)[-1]
    assert Plan(91, 4, 180, batch=2, grad_accum=2).steps == 16_380
