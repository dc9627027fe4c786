"""eval's sample readers: ComfyUI graphs, A1111 parameters, capcheck sidecars, epochs from LoRA names."""

import json

import pytest
from eval_files import comfy_graph, write_a1111, write_a1111_exif, write_capcheck, write_comfyui, write_plain

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


def test_comfyui_custom_advanced_sampler_with_linked_seed_and_model_only_lora(tmp_path):
    """SamplerCustomAdvanced keeps the seed in its noise node and the prompts in its guider; a seed widget
    converted to an input is a link to a primitive node."""
    graph = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "anima.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["1", 0], "lora_name": "kei-ep40.safetensors",
                                                              "strength_model": 0.7}},
        "3": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["2", 0], "shift": 3.0}},
        "4": {"class_type": "CLIPLoader", "inputs": {"clip_name": "qwen.safetensors", "type": "stable_diffusion"}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 0]}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": NEG, "clip": ["4", 0]}},
        "7": {"class_type": "CFGGuider", "inputs": {"model": ["3", 0], "positive": ["5", 0], "negative": ["6", 0],
                                                    "cfg": 4.0}},
        "8": {"class_type": "PrimitiveInt", "inputs": {"value": 1234}},
        "9": {"class_type": "RandomNoise", "inputs": {"noise_seed": ["8", 0]}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["9", 0], "guider": ["7", 0],
                                                                 "sampler": ["11", 0], "sigmas": ["12", 0],
                                                                 "latent_image": ["13", 0]}},
    }
    s = comfyui.from_graph(tmp_path / "adv.png", json.dumps(graph))
    assert (s.prompt, s.negative, s.seed, s.lora, s.strength, s.epoch) == (
        PROMPT, NEG, 1234, "kei-ep40.safetensors", 0.7, 40)


def test_comfyui_broken_graphs_are_named(tmp_path):
    with pytest.raises(SampleError, match="no sampler node"):
        comfyui.from_graph(tmp_path / "a.png", json.dumps({"1": {"class_type": "SaveImage", "inputs": {}}}))
    with pytest.raises(SampleError, match="not valid JSON"):
        comfyui.from_graph(tmp_path / "a.png", "{not json")
    graph = comfy_graph(PROMPT, NEG, 1, [])
    graph["3"]["inputs"]["positive"] = ["77", 0]
    with pytest.raises(SampleError, match="points to node 77, which is not in the graph"):
        comfyui.from_graph(tmp_path / "a.png", json.dumps(graph))


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_a1111_jpeg_and_webp_keep_the_parameters_in_exif(tmp_path, suffix):
    s = read_sample(write_a1111_exif(tmp_path / f"a{suffix}", 8, PROMPT, NEG, 9, [("keichan_e12", 1.0)]))
    assert (s.source, s.prompt, s.negative, s.seed, s.epoch) == ("a1111", PROMPT, NEG, 9, 12)
