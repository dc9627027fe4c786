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
