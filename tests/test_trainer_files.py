"""The files users actually download: the articles' text-encoder folder (weights +
tokenizer.json + vocab.json, nothing else) through preflight and a full `capcheck train`,
and the single-file DiT under every prefix ComfyUI files use, with or without buffers."""

import subprocess
import sys

import pytest
import torch
import yaml
from comfy_files import article_models, article_text_encoder, single_file_dit

from trainer.config import TrainConfig, load_config
from trainer.models import load_single_file_dit, load_tokenizer


@pytest.fixture(scope="module")
def article(tiny_anima, tmp_path_factory):
    root = tmp_path_factory.mktemp("article")
    return root, article_models(tiny_anima, root)


def test_the_articles_tokenizer_files_alone_pad_a_batch(tiny_anima, tmp_path):
    folder = article_text_encoder(tiny_anima, tmp_path / "te")
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "tokenizer.json", "vocab.json"]
    tokenizer = load_tokenizer(folder)
    assert tokenizer.pad_token == "<|endoftext|>"
    ids = tokenizer(["1girl", "1girl, solo, smile, long hair"], padding="longest", return_tensors="pt")
    assert ids.input_ids.shape[0] == 2 and ids.attention_mask[0].sum() < ids.attention_mask[1].sum()


def test_a_tokenizer_without_any_padding_token_is_a_one_line_error(tiny_anima, tmp_path):
    import json

    from trainer.errors import TrainError

    folder = article_text_encoder(tiny_anima, tmp_path / "te")
    data = json.loads((folder / "tokenizer.json").read_text())
    data["added_tokens"] = []
    data["model"]["vocab"].pop("<|endoftext|>")
    (folder / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(TrainError, match=r"no padding token and no <\|endoftext\|>") as exc:
        load_tokenizer(folder)
    assert str(folder) in str(exc.value) and "\n" not in str(exc.value)


def test_preflight_runs_the_text_path_on_the_articles_files(article):
    from trainer.preflight import run_preflight

    root, paths = article
    (root / "pf.yaml").write_text(yaml.safe_dump({**paths, "device": "cpu", "max_sequence_length": 64}))
    done = run_preflight(load_config(root / "pf.yaml"))
    assert all(c.ok for c in done) and done[-1].name == "text path"
    assert "padded -> context (2, " in done[-1].detail


def test_capcheck_train_on_the_articles_files(article, tiny_dataset):
    root, paths = article
    cfg = root / "train.yaml"
    cfg.write_text(yaml.safe_dump({**paths, "resolution": 256, "epochs": 1, "batch_size": 2, "lora_rank": 4,
                                   "learning_rate": 1e-3, "mixed_precision": "bf16", "device": "cpu",
                                   "output_dir": "out", "output_name": "article", "max_sequence_length": 64}))
    proc = subprocess.run([sys.executable, "-m", "verifier.cli.main", "train", str(tiny_dataset), "--config", str(cfg),
                           "--allow-unverified"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "capcheck train: 2/2 steps" in proc.stdout and "Traceback" not in proc.stderr
    assert "should be kept in float32" not in proc.stderr  # diffusers' notice on every cast, none of ours
    assert (root / "out" / "article_epoch001.safetensors").exists()


@pytest.mark.parametrize("buffers", [False, True], ids=["weights", "with-buffers"])
@pytest.mark.parametrize("prefix", ["net.", "model.diffusion_model.", "diffusion_model.", ""])
def test_a_single_file_dit_under_any_prefix(tiny_anima, tmp_path, prefix, buffers):
    from diffusers import AnimaTextConditioner, CosmosTransformer3DModel

    from trainer.preflight import model_files

    path = single_file_dit(tiny_anima, tmp_path / "dit.safetensors", prefix, buffers)
    transformer, conditioner = load_single_file_dit(path, "cpu", torch.float32)
    assert transformer.config.num_layers == 2 and conditioner.config.target_dim == 24
    for ours, folder in ((transformer, CosmosTransformer3DModel.from_pretrained(tiny_anima / "transformer")),
                         (conditioner, AnimaTextConditioner.from_pretrained(tiny_anima / "text_conditioner"))):
        a, b = ours.state_dict(), folder.state_dict()
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    cfg = TrainConfig(transformer_path=str(path), vae_path=str(tiny_anima / "vae"),
                      text_encoder_path=str(tiny_anima / "text_encoder"),
                      t5_tokenizer_path=str(tiny_anima / "t5_tokenizer"), device="cpu")
    assert model_files(cfg)[0][1] == ""  # preflight reads the same file as fine
