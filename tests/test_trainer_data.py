import random

import pytest
import torch

from trainer.data import bucket_for, buckets, epoch_batches, load_samples, training_text
from trainer.errors import TrainError
from trainer.shim import InterpolationMode, install, resize

CAPTION = ("masterpiece, best quality, score_7, safe,\n1girl, solo, keichan,\n"
           "A view of a girl, with a smile, looking back. Her hair, long and blonde, is tied.\n"
           "blunt bangs, braid, blue ribbon,\nsmile, portrait,\nwhite background, simple background")


def test_buckets_are_multiples_of_64_near_the_area():
    for w, h in buckets(1024):
        assert w % 64 == 0 and h % 64 == 0 and 0.85 <= w * h / 1024**2 <= 1.0 and max(w, h) / min(w, h) <= 2.5
    assert bucket_for((832, 1216), buckets(1024)) == (832, 1216)
    assert bucket_for((1000, 1000), buckets(1024)) == (1024, 1024)
    assert bucket_for((2000, 1000), buckets(1024)) in {(1408, 704), (1472, 704), (1408, 768)}


def test_batches_come_from_one_bucket_and_the_order_is_reproducible(tiny_dataset):
    samples = load_samples(tiny_dataset, 256)
    assert sorted({s.bucket for s in samples}) == [(192, 320), (256, 256)]
    batches = epoch_batches(samples, repeats=3, batch_size=2, seed=7, epoch=2)
    assert all(len({samples[i].bucket for i in b}) == 1 for b in batches)
    assert sorted(i for b in batches for i in b) == sorted(list(range(4)) * 3)
    assert batches == epoch_batches(samples, 3, 2, 7, 2) and batches != epoch_batches(samples, 3, 2, 7, 3)


def test_an_image_without_a_caption_is_an_error(tiny_dataset):
    (tiny_dataset / "2.txt").unlink()
    with pytest.raises(TrainError, match=r"2\.png: no caption beside this image"):
        load_samples(tiny_dataset, 256)


def test_shuffle_moves_tags_only_and_keeps_the_first_ones():
    assert training_text(CAPTION) == CAPTION
    seen = set()
    for seed in range(30):
        text = training_text(CAPTION, keep_tokens=7, shuffle=True, rng=random.Random(seed))
        lines = text.split("\n")
        assert lines[0] == "masterpiece, best quality, score_7, safe," and lines[1] == "1girl, solo, keichan,"
        assert lines[2] == CAPTION.split("\n")[2]  # the NL block, whole and in place
        tags = sorted(t.strip(", ") for line in lines[3:] for t in line.split(",") if t.strip())
        assert tags == sorted(["blunt bangs", "braid", "blue ribbon", "smile", "portrait", "white background",
                               "simple background"])
        seen.add(text)
    assert len(seen) > 10
    dropped = training_text(CAPTION, keep_tokens=7, dropout=0.5, rng=random.Random(1))
    assert dropped.count(",") < CAPTION.count(",") and CAPTION.split("\n")[2] in dropped


def test_the_resize_shim_is_nearest_neighbour():
    grid = torch.arange(16.0).view(1, 1, 4, 4)
    assert resize(grid, [2, 2], interpolation=InterpolationMode.NEAREST).flatten().tolist() == [0, 2, 8, 10]
    up = resize(torch.tensor([[[[1.0, 2.0]]]]), [2, 4], InterpolationMode.NEAREST)
    assert up.flatten().tolist() == [1, 1, 2, 2, 1, 1, 2, 2]
    assert resize(torch.ones(1, 4, 4, dtype=torch.bool), [2, 2]).dtype == torch.bool
    with pytest.raises(ValueError, match="only does nearest"):
        resize(grid, [2, 2], interpolation="bilinear")


def test_the_shim_lets_cosmos_run_without_torchvision():
    import diffusers.models.transformers.transformer_cosmos as cosmos
    from diffusers import CosmosTransformer3DModel

    from trainer.anima import TINY_TRANSFORMER

    install()
    try:
        import torchvision

        assert cosmos.transforms is torchvision.transforms  # a real torchvision is left alone
    except ImportError:
        assert cosmos.transforms.functional.resize is resize  # our one function, and only where it is missing
    assert not install()  # idempotent: never replaces what is there
    model = CosmosTransformer3DModel(**TINY_TRANSFORMER)
    out = model(hidden_states=torch.randn(1, 16, 1, 8, 8), timestep=torch.tensor([0.5]),
                encoder_hidden_states=torch.randn(1, 16, 24), padding_mask=torch.zeros(1, 1, 64, 64),
                return_dict=False)[0]
    assert out.shape == (1, 16, 1, 8, 8) and torch.isfinite(out).all()
