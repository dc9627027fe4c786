"""Issue 11 (the first hour), part A, through the CLI as a newcomer meets it:
data safety (undo, read-only captions, broken images), help and options,
and what `capcheck run` prints. Each test failed on the code before the fix."""

import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
import yaml

from captions.errors import CaptionWriteError
from captions.journal import write_caption

from conftest import EXAMPLES

POLICY = str(EXAMPLES / "keichan" / "policy.yaml")
TRUTH = str(EXAMPLES / "keichan" / "truth.json")
BORDERLINE = "02_clothed_pose/available/020104"


def capcheck(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "verifier.cli.main", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def demo_run(root, *extra, cwd=None):
    return capcheck("run", root, "--policy", POLICY, "--demo-model", TRUTH, "--no-train", *extra, cwd=cwd)


def captions(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.txt"))
            if "_review" not in p.parts}


# -- data safety ---------------------------------------------------------------------------------------------------


def test_undo_never_deletes_a_built_caption_unless_the_run_is_named_and_deleting_is_asked(example_dataset):
    assert capcheck("build", example_dataset, "--policy", POLICY).returncode == 0
    built = captions(example_dataset)
    assert len(built) == 12
    proc = capcheck("undo", example_dataset)  # the newest run is the build: undoing it would delete 12 captions
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "created 12 caption(s)" in proc.stderr and "--run 1 --delete-created" in proc.stderr
    assert captions(example_dataset) == built
    proc = capcheck("undo", example_dataset, "--run", 1)  # named, but deleting not asked for
    assert proc.returncode == 2 and captions(example_dataset) == built
    proc = capcheck("undo", example_dataset, "--run", 1, "--delete-created", "--dry-run")
    assert proc.returncode == 0 and "would delete 12" in proc.stdout and captions(example_dataset) == built
    proc = capcheck("undo", example_dataset, "--run", 1, "--delete-created")
    assert proc.returncode == 0, proc.stderr
    assert "restored 0 caption(s), deleted 12" in proc.stdout and captions(example_dataset) == {}


def test_a_second_undo_after_undoing_apply_does_not_undo_the_build(example_dataset):
    assert demo_run(example_dataset).returncode == 0
    before = captions(example_dataset)
    first = capcheck("undo", example_dataset)
    assert first.returncode == 0 and "(apply): restored 3 caption(s), deleted 0" in first.stdout
    after_first = captions(example_dataset)
    second = capcheck("undo", example_dataset)
    assert second.returncode == 2 and "(build) created 12 caption(s)" in second.stderr
    assert captions(example_dataset) == after_first and len(after_first) == 12 and after_first != before


def test_undo_last_is_real_and_cannot_be_combined_with_run(example_dataset):
    assert demo_run(example_dataset).returncode == 0
    proc = capcheck("undo", example_dataset, "--last", "--run", 1)
    assert proc.returncode == 2 and "not both" in proc.stderr
    proc = capcheck("undo", example_dataset, "--last", "--dry-run")
    assert proc.returncode == 0 and "(apply): would restore 3 caption(s)" in proc.stdout


def test_apply_leaves_a_read_only_caption_alone_and_says_so(example_dataset):
    assert capcheck("build", example_dataset, "--policy", POLICY).returncode == 0
    locked = next(example_dataset.rglob("020101.txt"))  # a "full body" that is a cowboy shot: apply would fix it
    text = locked.read_bytes()
    locked.chmod(0o444)
    try:
        run = demo_run(example_dataset)
        assert "apply: changed 2, borderline left for a person 1, stale 0, read-only (left alone) 1" in run.stdout
        assert "read-only, not changed: 02_clothed_pose/available/020101.png" in run.stdout
        assert not list((example_dataset / "_review").rglob("020101.png"))  # sorting would not help: held
        assert locked.read_bytes() == text and stat.S_IMODE(locked.stat().st_mode) == 0o444
    finally:
        locked.chmod(0o644)


def test_no_caption_write_replaces_a_read_only_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old\n")
    path.chmod(0o444)
    with pytest.raises(CaptionWriteError, match="read-only"):
        write_caption(path, "new\n", None, "test")
    assert path.read_text() == "old\n"


def test_a_truncated_png_is_one_line_skipped_and_not_routed(example_dataset):
    broken = next(example_dataset.rglob("010001.png"))
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    proc = demo_run(example_dataset)
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.stdout.count("010001.png") == 1  # one line names it
    assert ("skipped 01_bust_front/available/010001.png: cannot read image: image file is truncated"
            in proc.stdout), proc.stdout
    assert not list((example_dataset / "_review").rglob("010001.png"))  # nobody can sort a broken file
    assert (example_dataset / "_review" / "framing" / "cowboy_shot" / "020104.png").exists()  # the rest goes on
    review = example_dataset / "_review" / "framing"
    (review / "cowboy_shot" / "020104.png").rename(review / "full_body" / "020104.png")
    assert capcheck("ingest", example_dataset / "_review", "--aspects", "framing").returncode == 0
    proc = demo_run(example_dataset)  # all sorted: only the broken file stands between the set and training
    assert proc.returncode == 1 and "review: nothing to sort; 1 file(s) to fix first" in proc.stdout
    assert "  01_bust_front/available/010001.png: replace or remove the file" in proc.stdout


# -- help and options ------------------------------------------------------------------------------------------------


COMMANDS = ["run", "build", "lint", "verify", "apply", "undo", "route", "ingest", "agreement", "plan", "preflight",
            "train", "demo-server"]


def test_help_lists_commands_in_workflow_order_and_shows_readable_values():
    top = capcheck("--help")
    listed = re.findall(r"^│ ([a-z-]+) ", top.stdout, re.M)
    assert [c for c in listed if c in COMMANDS] == COMMANDS
    for command in ["", *COMMANDS]:
        page = capcheck(*([command] if command else []), "--help").stdout
        for typer_ism in ("<bool>", "<list[str]>", "<str>", "<path>", "{dataset}", "{path}", "<int>", "<float>"):
            assert typer_ism not in page, (command, typer_ism)
    apply_help = capcheck("apply", "--help").stdout
    assert "Usage: python -m verifier.cli.main apply [OPTIONS] DATASET" in apply_help
    assert re.search(r"--dry-run\s+Show the diffs", apply_help)  # a flag: no value shown


def test_version():
    proc = capcheck("--version")
    assert proc.returncode == 0 and re.fullmatch(r"capcheck \S+\n", proc.stdout)


def test_aspects_everywhere_old_spellings_hidden_and_typos_list_the_valid_ones(example_dataset):
    for command in ("verify", "run", "apply", "route", "ingest", "agreement"):
        page = capcheck(command, "--help").stdout
        assert "--aspects" in page and "--aspect " not in page and "--apply-aspects" not in page, command
    proc = capcheck("route", example_dataset, "--aspects", "framng", "--policy", POLICY)
    assert proc.returncode == 2 and "'framng'" in proc.stderr and "framing, view, facing, expression" in proc.stderr
    proc = capcheck("route", example_dataset, "--aspect", "framng", "--policy", POLICY)  # the old spelling
    assert proc.returncode == 2 and "framing, view" in proc.stderr
    proc = demo_run(example_dataset, "--aspects", "framing,facng")
    assert proc.returncode == 2 and "'facng'" in proc.stderr and captions(example_dataset) == {}  # before build
    assert "-m" in capcheck("agreement", "--help").stdout


def test_apply_without_a_report_says_so_before_asking_for_a_policy(example_dataset):
    proc = capcheck("apply", example_dataset)
    assert proc.returncode == 2 and "no verify report" in proc.stderr and "--policy" not in proc.stderr.split(":")[1]


def test_run_without_a_model_stops_before_build_and_names_the_demo_model(example_dataset):
    proc = capcheck("run", example_dataset, "--policy", POLICY, "--no-train")
    assert proc.returncode == 2 and "--demo-model" in proc.stderr
    assert proc.stdout == "" and captions(example_dataset) == {}  # nothing built, nothing linted


def test_train_without_captions_says_so_plainly(example_dataset, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump(dict(model_path=str(tmp_path / "anima"), device="cpu", output_dir=str(tmp_path))))
    proc = capcheck("train", example_dataset, "--config", cfg)
    assert proc.returncode == 1 and "no captions in" in proc.stdout and "0 of 0" not in proc.stdout


# -- what run prints --------------------------------------------------------------------------------------------------


def test_run_prints_each_stage_once_whole_paths_and_runnable_quoted_commands(tmp_path):
    root = tmp_path / "データ セット"
    shutil.copytree(EXAMPLES / "keichan" / "dataset", root)
    next(root.rglob("030201.json")).write_text("{")  # one invalid sidecar
    proc = demo_run("データ セット", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # waiting for a person is not a failure
    lines = proc.stdout.splitlines()
    for stage in ("build", "lint", "verify", "apply", "review"):
        assert sum(line.startswith(f"{stage}:") for line in lines) == 1, (stage, proc.stdout)
    assert not re.search("[┏┃│…]", proc.stdout)  # no table, nothing cut to 80 columns
    report = next(line for line in lines if line.startswith("  report: ")).removeprefix("  report: ")
    assert (tmp_path / report).is_file()
    # findings come before the instructions, which stay in one piece
    start = next(i for i, line in enumerate(lines) if line.startswith("sort by eye"))
    assert any("invalid sidecar" in line for line in lines[:start])
    assert not any("invalid sidecar" in line for line in lines[start:])
    command = lines[start + 1].strip()
    assert command == "capcheck ingest 'データ セット/_review' --aspects framing"
    review = root / "_review" / "framing"
    (review / "cowboy_shot" / "020104.png").rename(review / "full_body" / "020104.png")
    env = {**os.environ, "PATH": f"{_shim(tmp_path)}{os.pathsep}{os.environ['PATH']}"}
    pasted = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert pasted.returncode == 0 and "changed 0, unchanged 1" in pasted.stdout, pasted.stderr


def test_counters_name_what_changed_a_caption(example_dataset):
    assert demo_run(example_dataset).returncode == 0
    review = example_dataset / "_review" / "framing"
    (review / "cowboy_shot" / "020104.png").rename(review / "full_body" / "020104.png")
    assert capcheck("ingest", example_dataset / "_review", "--aspects", "framing").returncode == 0
    edited = next(example_dataset.rglob("010002.txt"))
    edited.write_text(edited.read_text().replace("white background", "white background, blush"))
    proc = demo_run(example_dataset)
    assert "build: written 0, unchanged 8, kept 4 (changed by apply 3, edited by hand 1)" in proc.stdout
    assert "left alone (edited since built)" not in proc.stdout
    # the three captions apply fixed are counted as fixed, not as if the model had always agreed
    assert "fixed by apply 3, settled by a person 1" in proc.stdout


def test_run_with_the_old_apply_aspects_spelling_still_works(example_dataset):
    proc = demo_run(example_dataset, "--apply-aspects", "facing")
    assert proc.returncode == 0 and "apply: changed 1," in proc.stdout, proc.stdout


def test_fail_on_review_gives_scripts_exit_3(example_dataset):
    assert demo_run(example_dataset, "--fail-on-review").returncode == 3


def _shim(tmp_path):
    """`capcheck` on PATH running this tree's code, as `pip install -e .` would."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "capcheck"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m verifier.cli.main "$@"\n')
    shim.chmod(0o755)
    return bin_dir


# -- what a terminal shows ----------------------------------------------------------------------------------------


def _screen(raw: str) -> list[str]:
    """What a terminal shows after `raw`: enough of one (carriage return, newline,
    erase line, cursor up) to see what rich's live bars leave behind."""
    lines, row, col = [""], 0, 0
    for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]", raw):
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif token == "\x1b[2K":
            lines[row] = ""
        elif token.startswith("\x1b[") and token.endswith("A"):
            row = max(0, row - int(token[2:-1] or 1))
        elif not token.startswith("\x1b"):
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + 1:]
            col += 1
    return [line.rstrip() for line in lines]


def _in_a_terminal(args, cwd) -> str:
    import pty

    parent, child = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "50"}
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", *map(str, args)], stdin=child, stdout=child,
                            stderr=child, cwd=cwd, env=env, close_fds=True)
    os.close(child)
    raw = b""
    while True:
        try:
            chunk = os.read(parent, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        raw += chunk
    os.close(parent)
    assert proc.wait(timeout=300) in (0, 3)  # 3: what waiting for a person was, before it became 0
    return raw.decode("utf-8", "replace")


def test_in_a_terminal_one_verify_bar_no_train_bar_and_no_line_glued_to_a_bar(example_dataset):
    screen = _screen(_in_a_terminal(["run", example_dataset.name, "--policy", POLICY, "--demo-model", TRUTH,
                                     "--no-train"], example_dataset.parent))
    bars = [line for line in screen if "━" in line]
    assert len(bars) == 1 and bars[0].startswith("verify ") and "12/12" in bars[0], screen
    assert not any(line.startswith("train ") for line in screen), screen  # --no-train: no train bar at all
    for stage in ("build", "lint", "verify", "apply", "review"):  # each once, at the start of a line of its own
        assert sum(line.startswith(f"{stage}: ") for line in screen) == 1, (stage, screen)
