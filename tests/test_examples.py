import json
import runpy

import prompts

from conftest import EXAMPLES


def test_example_script_reproduces_the_bundled_dataset(tmp_path):
    module = runpy.run_path(str(EXAMPLES / "keichan" / "make_dataset.py"), run_name="not_main")
    truth = module["make"](tmp_path)
    assert truth == json.loads((EXAMPLES / "keichan" / "truth.json").read_text())
    made = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    shipped = sorted(p.relative_to(EXAMPLES / "keichan" / "dataset").as_posix()
                     for p in (EXAMPLES / "keichan" / "dataset").rglob("*"))
    assert made == shipped
    assert len(truth) == 12 and {k.split("/")[0] for k in truth} == {"01_bust_front", "02_clothed_pose",
                                                                      "03_nude_angles"}
    for rel in truth:
        assert (tmp_path / rel).with_suffix(".json").exists()


def test_prompt_templates_load():
    assert "sample_keichan" in prompts.names()
    assert "keichan" in prompts.load("sample_keichan")
