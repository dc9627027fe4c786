"""The `eval:` section of train.yaml (trainer.config.EvalConfig): defaults and bad values named with the file."""

import pytest

from trainer.config import EvalConfig, load_config
from trainer.errors import TrainError

BASE = "model_path: models/anima\noutput_dir: out\n"
EVAL = """eval:
  prompts:
    K: "keichan, 1girl, solo"
    KT: "keichan, 1girl, solo, blonde hair, blue eyes"
  negative: "ahoge, worst quality"
  seeds: [42, 100]
  epochs: [5, 10]
  strengths: [0.8, 1.0]
  must_show: "blonde hair, blue eyes"
  must_not_show: [ahoge]
  steps: 2
  width: 64
  height: 128
"""


def test_an_eval_section_loads_with_its_values_and_defaults(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(BASE + EVAL)
    ev = load_config(path).eval
    assert ev.prompts == {"K": "keichan, 1girl, solo", "KT": "keichan, 1girl, solo, blonde hair, blue eyes"}
    assert ev.seeds == [42, 100] and ev.epochs == [5, 10] and ev.strengths == [0.8, 1.0]
    assert ev.must_show == ["blonde hair", "blue eyes"] and ev.must_not_show == ["ahoge"]  # a string splits on commas
    assert (ev.steps, ev.cfg, ev.width, ev.height) == (2, None, 64, 128)  # None: the config's sample_* settings


def test_no_eval_section_is_none_and_an_empty_one_has_the_defaults(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(BASE)
    assert load_config(path).eval is None
    path.write_text(BASE + "eval: {}\n")
    ev = load_config(path).eval
    assert ev == EvalConfig() and ev.seeds == [42, 100, 200] and ev.strengths == [1.0] and ev.epochs is None
    assert ev.must_show is None and ev.must_not_show is None and ev.prompts == {}


@pytest.mark.parametrize("section, message", [
    ("eval:\n  seedz: [1]\n", "unknown key 'eval.seedz'"),
    ("eval:\n  seeds: []\n", "eval.seeds: the list is empty"),
    ("eval:\n  seeds: [1, 2, 1]\n", "eval.seeds: 1 listed twice"),
    ("eval:\n  strengths: [1.0, 0]\n", "eval.strengths: 0.0 is not above 0"),
    ("eval:\n  epochs: [0, 5]\n", "eval.epochs: 0 is not a saved epoch"),
    ("eval:\n  prompts: {'K T': x}\n", "eval.prompts: format name 'K T' must be letters"),
    ("eval:\n  prompts: {K: '  '}\n", "eval.prompts: K is empty"),
    ("eval:\n  width: 100\n", "eval.width: 100 is not a multiple of 64"),
    ("eval:\n  steps: 0\n", "eval.steps: 0 is not above 0"),
])
def test_bad_eval_values_name_the_file_and_the_key(tmp_path, section, message):
    path = tmp_path / "train.yaml"
    path.write_text(BASE + section)
    with pytest.raises(TrainError) as exc:
        load_config(path)
    assert str(exc.value).startswith(f"{path}: ") and message in str(exc.value)


def test_plan_counts_the_eval_matrix_from_the_sections_values(tmp_path):
    from trainer.plan import EvalCost, eval_cost, saved_epochs

    assert saved_epochs(20, 5) == [5, 10, 15, 20] and saved_epochs(7, 3) == [3, 6, 7] and saved_epochs(4, 0) == [4]
    path = tmp_path / "train.yaml"
    path.write_text(BASE + "epochs: 20\nsave_every: 5\n" + EVAL)  # epochs [5, 10], 2 prompts, 2 seeds, 2 strengths
    cost, notes = eval_cost(load_config(path), 20)
    assert notes == [] and cost.samples == 2 * 2 * (2 * 2 + 1) == 20 and cost.requests == 20
    assert (cost.steps, cost.cfg, cost.pixels, cost.passes) == (2, 4.0, 64 * 128, 2)  # cfg from sample_cfg_scale
    # unset epochs: every saved one; a listed epoch the run will not save is named
    path.write_text(BASE + "epochs: 20\nsave_every: 5\neval:\n  prompts: {K: keichan}\n  epochs: [5, 12]\n")
    cost, notes = eval_cost(load_config(path), 20)
    assert notes == ["eval.epochs: epoch 12 will not be saved (save_every 5, 20 epochs)"]
    path.write_text(BASE + "epochs: 20\nsave_every: 5\neval:\n  prompts: {K: keichan}\n  cfg: 1.0\n")
    cost, _ = eval_cost(load_config(path), 20)
    assert cost.samples == 1 * 3 * (1 * 4 + 1) == 15 and cost.passes == 1
    # a 25-step CFG sample at the training resolution: 50 forwards; a training step of batch 4: 12
    one = EvalCost(1, 1, 1, 1, steps=25, cfg=4.0, pixels=1024 * 1024)
    assert one.seconds_per_sample(0.5, batch=4, grad_accum=1, resolution=1024) == pytest.approx(50 / 12 / 0.5)
    assert one.seconds_per_sample(None, 4, 1, 1024) is None


def test_capcheck_plan_prints_the_eval_cost(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "train.yaml"
    path.write_text(BASE + "epochs: 20\nsave_every: 5\nbatch_size: 4\nresolution: 1024\nsample_width: 1024\n"
                    "sample_height: 1024\nsample_steps: 25\n"
                    "eval:\n  prompts: {K: keichan, KT: 'keichan, blonde hair', N: 'keichan. A girl.'}\n")
    run = subprocess.run([sys.executable, "-m", "verifier.cli.main", "plan", "--config", str(path), "--images", "91",
                          "--its", "0.5"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    # 3 prompts x 3 default seeds x (1 strength x 4 saved epochs + the baseline)
    assert ("eval: 3 prompts x 3 seeds x (1 strength x 4 epochs + the baseline) = 45 samples; "
            "45 vision-model requests (one per sample)") in lines
    each = 25 * 2 / (0.5 * 3 * 4)  # 8.33 s; 45 of them 6.2 min
    assert any(line.startswith(f"eval: about {each:.2f} s per sample, 6.2 min for 45 (an estimate") for line in lines)
    run = subprocess.run([sys.executable, "-m", "verifier.cli.main", "plan", "--config", str(path), "--images", "91"],
                         capture_output=True, text=True, timeout=120)
    assert "eval time: give --its (measured training steps per second) for an estimate" in run.stdout.splitlines()
