"""The CLI through a real subprocess, as a user runs it."""

import json
import re
import subprocess
import sys

from conftest import EXAMPLES, TAGS_CSV

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
HEAVY = ("torch", "diffusers", "transformers", "peft", "openai", "safetensors")


def capcheck(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_help_does_not_import_heavy_modules():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "verifier.cli.main", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "build" in proc.stdout and "lint" in proc.stdout
    imported = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+(\S+)$", proc.stderr, re.M)}
    assert "typer" in imported  # the check itself works
    assert not imported.intersection(HEAVY), imported.intersection(HEAVY)


def test_build_then_lint_clean(example_dataset):
    proc = capcheck("build", example_dataset, "--policy", POLICY)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"written\s+│\s+12", proc.stdout)
    assert "full body 8" in proc.stdout
    assert (example_dataset / ".capcheck" / "capcheck.db").exists()
    args = ["lint", example_dataset, "--policy", POLICY]
    if TAGS_CSV.exists():
        args += ["--tags", TAGS_CSV]
    proc = capcheck(*args)
    assert proc.returncode == 0, proc.stdout
    assert "0 error(s), 0 warning(s)" in proc.stdout


def test_build_dry_run_and_rerun(example_dataset):
    proc = capcheck("build", example_dataset, "--policy", POLICY, "--dry-run")
    assert proc.returncode == 0 and re.search(r"would write\s+│\s+12", proc.stdout)
    assert not list(example_dataset.rglob("*.txt"))
    capcheck("build", example_dataset, "--policy", POLICY)
    proc = capcheck("build", example_dataset, "--policy", POLICY)
    assert re.search(r"unchanged\s+│\s+12", proc.stdout)


def test_lint_json_and_exit_code(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "a.txt").write_text("general, 1girl, (smile:1.2)\n")
    proc = capcheck("lint", tmp_path, "--format", "json")
    assert proc.returncode == 1
    findings = json.loads(proc.stdout)
    assert {f["rule"] for f in findings} >= {"rating", "weight-syntax", "nl-sentences"}
    assert set(findings[0]) == {"path", "rule", "severity", "message"}
    text = capcheck("lint", tmp_path / "a.txt")
    assert text.returncode == 1 and "a.txt: weight-syntax: '(smile:1.2)'" in text.stdout


def test_bad_policy_is_one_line_naming_the_file(tmp_path, example_dataset):
    bad = tmp_path / "bad.yaml"
    bad.write_text("trigger: keichan\ntrigerr: x\n")
    proc = capcheck("build", example_dataset, "--policy", bad)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: unknown key 'trigerr'"
    assert not list(example_dataset.rglob("*.txt"))


def test_missing_dataset_and_bad_sidecar(tmp_path, example_dataset):
    proc = capcheck("lint", tmp_path / "nope")
    assert proc.returncode == 2 and "no such dataset folder" in proc.stderr
    next(example_dataset.rglob("010001.json")).write_text("{")
    proc = capcheck("build", example_dataset, "--policy", POLICY)
    assert proc.returncode == 1 and "010001.json: not valid JSON" in proc.stderr
    assert re.search(r"written\s+│\s+11", proc.stdout)
