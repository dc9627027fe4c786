"""eval's sample readers: ComfyUI graphs, A1111 parameters, capcheck sidecars, epochs from LoRA names."""

import json

import pytest
from eval_files import comfy_graph, write_a1111, write_capcheck, write_comfyui, write_plain

from verifier.errors import SampleError
from verifier.eval import comfyui
from verifier.eval.epochs import epoch_of
from verifier.eval.gather import NO_METADATA, gather, read_sample

PROMPT = "keichan, 1girl, solo, upper body, facing left"
NEG = "worst quality, (ahoge:1.5), antenna hair"


@pytest.mark.parametrize("name, epoch", [
    ("keichan_epoch020.safetensors", 20),  # capcheck
    ("keichan-000125.safetensors", 125),  # kohya
    ("keichan_ep5.safetensors", 5),
    ("keichan-ep50", 50),
    ("keichan_e10.safetensors", 10),
    ("loras\\chars/keichan_EPOCH007.safetensors", 7),  # a ComfyUI sub-folder, any case
    ("keichan.safetensors", None),
    ("keichan_v2.safetensors", None),
    ("keichan-0020.safetensors", None),  # not kohya's six digits: not guessed
])
def test_epoch_from_the_lora_file_name(name, epoch):
    assert epoch_of(name) == epoch


def test_comfyui_graph_gives_prompt_seed_lora_and_epoch(tmp_path):
    path = write_comfyui(tmp_path / "a.png", 1, PROMPT, NEG, 100, [("style_flat.safetensors", 0.4),
                                                                    ("chars/keichan_epoch020.safetensors", 0.8)])
    s = read_sample(path)
    assert (s.source, s.prompt, s.negative, s.seed) == ("comfyui", PROMPT, NEG, 100)
    assert (s.lora, s.strength, s.epoch) == ("chars/keichan_epoch020.safetensors", 0.8, 20)


def test_comfyui_loader_not_on_the_model_chain_does_not_count(tmp_path):
    graph = comfy_graph(PROMPT, NEG, 7, [])
    graph["99"] = {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1],
                                                         "lora_name": "keichan_epoch050.safetensors",
                                                         "strength_model": 1.0, "strength_clip": 1.0}}
    s = comfyui.from_graph(tmp_path / "x.png", json.dumps(graph))
    assert (s.lora, s.epoch) == (None, 0)  # the sampler's model never passes through node 99: the baseline


def test_comfyui_several_dated_loras_or_none_dated_are_named_not_guessed(tmp_path):
    two = write_comfyui(tmp_path / "two.png", 2, PROMPT, NEG, 1, [("a_epoch010.safetensors", 1.0),
                                                                  ("b_epoch020.safetensors", 1.0)])
    undated = write_comfyui(tmp_path / "undated.png", 3, PROMPT, NEG, 1, [("keichan_final.safetensors", 1.0)])
    with pytest.raises(SampleError, match="several LoRAs carry an epoch"):
        read_sample(two)
    with pytest.raises(SampleError, match=r"no epoch in the LoRA name \(keichan_final\)"):
        read_sample(undated)


def test_a1111_parameters_give_prompt_without_lora_terms(tmp_path):
    path = write_a1111(tmp_path / "b.png", 4, PROMPT, NEG, 42, [("keichan-000010", 0.9)])
    s = read_sample(path)
    assert (s.source, s.prompt, s.negative, s.seed, s.lora, s.strength, s.epoch) == (
        "a1111", PROMPT, NEG, 42, "keichan-000010", 0.9, 10)
    base = read_sample(write_a1111(tmp_path / "c.png", 5, PROMPT, NEG, 42, []))
    assert (base.lora, base.epoch) == (None, 0)


def test_capcheck_sidecar(tmp_path):
    s = read_sample(write_capcheck(tmp_path / "ep0020_K_s42.png", 6, PROMPT, NEG, 42,
                                   "keichan_epoch020.safetensors", 20, "K"))
    assert (s.source, s.format, s.seed, s.epoch, s.strength) == ("capcheck", "K", 42, 20, 1.0)
    bad = tmp_path / "bad.png"
    write_plain(bad, 7)
    bad.with_suffix(".json").write_text('{"capcheck_sample": 1, "prompt": "x", "epoch": "twenty"}')
    with pytest.raises(SampleError, match="epoch: expected a whole number"):
        read_sample(bad)


def test_gather_names_images_without_metadata_and_reads_the_rest(tmp_path):
    write_comfyui(tmp_path / "comfy.png", 1, PROMPT, NEG, 1, [("k_ep5.safetensors", 1.0)])
    write_plain(tmp_path / "plain.png", 2)
    (tmp_path / "sub").mkdir()
    write_a1111(tmp_path / "sub" / "forge.png", 3, PROMPT, NEG, 2, [])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    write_plain(tmp_path / ".capcheck" / "reports" / "thumbs" / "t.png", 4)  # our own folder is never read
    samples, skipped = gather(tmp_path)
    assert sorted(s.path.name for s in samples) == ["comfy.png", "forge.png"]
    assert skipped["plain.png"] == NO_METADATA
    assert skipped["broken.png"].startswith("cannot read the image")
    assert set(skipped) == {"plain.png", "broken.png"}
