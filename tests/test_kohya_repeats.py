"""kohya `N_name` repeat folders: counted by `plan` and by the trainer's epochs."""

import subprocess
import sys
from pathlib import Path

from PIL import Image

from captions.dataset import folder_repeats, image_repeats
from trainer.data import Sample, epoch_batches


def test_folder_repeats():
    assert folder_repeats(Path("data/10_kanachan/a.png")) == 10
    assert folder_repeats(Path("data/kanachan/a.png")) is None
    assert folder_repeats(Path("data/03_nude_angles/a.png")) is None  # the articles' numbered sets: an order
    assert folder_repeats(Path("10_kanachan/sub/a.png")) is None  # kohya reads the N_name folder itself only
    assert image_repeats(Path("x/3_a/a.png"), 4) == 3 and image_repeats(Path("x/a/a.png"), 4) == 4


def test_an_epoch_sees_each_image_its_folders_repeats():
    samples = [Sample(Path(p), "", str(i), (64, 64)) for i, p in enumerate(["d/10_a/0.png", "d/2_b/1.png", "d/c/2.png"])]
    seen = [i for batch in epoch_batches(samples, 3, 1, 0, 1) for i in batch]
    assert (seen.count(0), seen.count(1), seen.count(2)) == (10, 2, 3)


def test_plan_counts_the_folders(tmp_path):
    for folder, n in (("10_kanachan", 3), ("2_extra", 2)):
        (tmp_path / folder).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8)).save(tmp_path / folder / f"{i}.png")
    proc = subprocess.run([sys.executable, "-m", "verifier.cli.main", "plan", str(tmp_path), "--epochs", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "10_kanachan/: 3 images x 10 repeats (kohya folder)" in proc.stdout
    assert "34 images seen per epoch / batch 1 = 34 steps per epoch; x 2 epochs = 68 steps" in proc.stdout
