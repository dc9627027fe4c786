"""What the loss says about the captions: a planted swapped-caption pair ranks at the top of losses.json.

Eight images, four red-ish and four blue-ish (noise on a colour, so no two are alike), captioned by
their colour; one red and one blue image trade captions. The tiny model overfits the other six in a
few epochs; the two whose caption says the other colour are the ones the LoRA fits worst, relative
to the base model (the ratio)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from trainer.losses import fence

CAPTIONS = {"red": "1girl, solo, red theme, red background", "blue": "1girl, solo, blue theme, blue background"}


@pytest.fixture
def swapped(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        colour = "red" if i < 4 else "blue"
        base = np.array([200, 30, 30] if colour == "red" else [30, 30, 200], dtype=np.float32)
        pixels = np.clip(base + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
        said = {0: "blue", 4: "red"}.get(i, colour)  # the planted swap: images 0 and 4
        (root / f"{i}.txt").write_text(CAPTIONS[said])
    return root


def train(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli", "train", *map(str, args), "--allow-unverified"],
                          capture_output=True, text=True, timeout=600)


def test_a_swapped_caption_pair_ranks_at_the_top(tiny_anima, swapped, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(
        model_path=str(tiny_anima), resolution=64, epochs=12, batch_size=2, lora_rank=8, learning_rate=1e-2,
        mixed_precision="no", device="cpu", output_dir=str(tmp_path / "out"), output_name="swap",
        max_sequence_length=32, seed=3, save_every=0, log_every=8)))
    proc = train(swapped, "--config", config)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "out" / "losses.json").read_text())
    assert data["images_scored"] == 8 and data["lora"] == "swap_epoch012.safetensors"
    assert json.loads((swapped / ".capcheck" / "losses.json").read_text()) == data  # kept for route and verify
    ranked = [(x["image"], round(x["ratio"], 3)) for x in data["images"]]
    print(f"\nplanted swap (0.png, 4.png), ranked by loss ratio with/without the LoRA: {ranked}; "
          f"fence {data['quartiles']['fence']:.3f}, flagged {[x['image'] for x in data['images'] if x['worst']]}")
    assert {x["image"] for x in data["images"][:2]} == {"0.png", "4.png"}
    assert "losses: 8 images scored with the LoRA and without" in proc.stdout
    assert f"{data['images'][0]['image']}  ratio {data['images'][0]['ratio']:.3f}" in proc.stdout

    # --losses on the finished run: no training, the same numbers (fixed noise, the same LoRA)
    again = train(swapped, "--config", config, "--losses")
    assert again.returncode == 0, again.stderr
    rescored = json.loads((tmp_path / "out" / "losses.json").read_text())
    assert rescored["images"] == data["images"] and rescored["lora"].startswith("swap_state.pt")


def test_the_fence_rests_on_the_quartiles():
    assert fence([1.0, 1.0, 1.0]) is None  # three numbers have no quartiles worth the name
    limits = fence([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 3.0])
    assert limits["q3"] == 0.5 and limits["fence"] == 0.5
    assert fence([0.4, 0.5, 0.6, 0.7])["fence"] == pytest.approx(0.625 + 1.5 * 0.15)
