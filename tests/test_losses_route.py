"""`capcheck route --losses` and `capcheck verify --only-losses` on the losses.json a run kept
with the dataset: the worst fits go to _review/loss/ with their captions listed, and only they
are asked again, fresh, from a real loopback server."""

import subprocess
import sys

from captions.dataset import iter_images
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer
from verifier.human.route_losses import keep

from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")


def capcheck(*args):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def plant_losses(root):
    """A losses.json as `capcheck train` keeps it: every image, two of them beyond the fence."""
    images = sorted(item.image.relative_to(root).as_posix() for item in iter_images(root))
    entries = [{"image": rel, "sha256": "x", "loss_lora": 0.1, "loss_base": 0.2, "ratio": 0.5, "worst": False}
               for rel in images]
    for entry in entries[:2]:
        entry.update(loss_lora=0.19, ratio=0.95, worst=True)
    keep(root, {"lora": "keichan_epoch010.safetensors", "images_scored": len(entries), "rule": "ratio > Q3 + 1.5 IQR",
                "quartiles": {"q1": 0.5, "q3": 0.5, "iqr": 0.0, "fence": 0.5}, "worst": 2, "images": entries})
    return images[:2]


def test_route_losses_puts_the_worst_fits_under_review_loss(example_dataset):
    worst = plant_losses(example_dataset)
    (example_dataset / worst[0]).with_suffix(".txt").write_text("1girl, [red]solo[/red], keichan\n")
    proc = capcheck("route", example_dataset, "--losses")
    assert proc.returncode == 0, proc.stderr
    assert "2 worst fit(s) into" in proc.stdout and f"{worst[0]}  ratio 0.950" in proc.stdout
    folder = example_dataset / "_review" / "loss"
    assert sorted(p.name for p in folder.glob("*.png")) == sorted(w.rsplit("/", 1)[-1] for w in worst)
    listing = (folder / "losses.txt").read_text()
    assert f"{worst[0]}: ratio 0.950 (0.1900 with the LoRA, 0.2000 without)\n    1girl, [red]solo[/red]" in listing
    again = capcheck("route", example_dataset, "--losses")
    assert "0 worst fit(s)" in again.stdout and "(2 already there)" in again.stdout


def test_verify_only_losses_asks_again_about_the_worst_fits_only(example_dataset, keichan):
    assert capcheck("build", example_dataset, "--policy", POLICY).returncode == 0
    worst = plant_losses(example_dataset)
    model = DemoModel.load(EXAMPLES / "keichan" / "truth.json", example_dataset, keichan)
    with DemoServer(model) as server:
        first = capcheck("verify", example_dataset, "--policy", POLICY, "--model", "demo", "--base-url", server.url)
        assert first.returncode in (0, 1), first.stderr
        server.stats.reset()
        proc = capcheck("verify", example_dataset, "--policy", POLICY, "--model", "demo", "--base-url", server.url,
                        "--only-losses")
        assert proc.returncode in (0, 1), proc.stderr
        asked = {key for key, _, _ in server.stats.log}
    assert len(asked) == 2 and server.stats.requests >= 2  # fresh: the store's answers did not stand in
    assert all(any(w.rsplit("/", 1)[-1].split(".")[0] in key for w in worst) for key in asked), (asked, worst)


def test_route_losses_without_a_run_is_one_line(example_dataset):
    proc = capcheck("route", example_dataset, "--losses")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "no losses yet: train first" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
