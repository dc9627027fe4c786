"""The README, read top to bottom, is what a newcomer sees.

The commands are taken from README.md itself: its first ```bash block (the
set-up and the main job) and every ```bash block of the walkthrough
section, each followed by the ```text block of what it prints. They run, in
order, with bash (`set -e -o pipefail`: every command must exit 0) in a
scratch directory that holds a link to the repository's `examples/`.

The set-up lines are the one thing not run as written: the environment
under test is already installed, so `python -m venv`, activating it and
`pip install` are dropped, and `python` and `capcheck` on PATH are small
shims that run this checkout's code with the test's interpreter (what
`pip install -e .` gives a user). Every line of an output block must then
appear in what the commands printed, the lines on stdout in the order shown,
and every line they printed (stdout or stderr: a `DEMO MODEL:` or `policy:`
line too) must be shown.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SETUP = re.compile(r"^(python3? -m venv |\. \.venv/bin/activate|source \.venv/bin/activate|pip install )")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(markdown: str) -> list[tuple[str, str, str]]:
    """(section heading, language, text) of every fenced block, in order."""
    found, heading = [], ""
    position = 0
    for match in BLOCK.finditer(markdown):
        headings = re.findall(r"^#+ (.+)$", markdown[position:match.start()], re.M)
        heading = headings[-1] if headings else heading
        position = match.end()
        found.append((heading, match.group(1), match.group(2)))
    return found


def runnable(markdown: str) -> list[tuple[str, str]]:
    """(commands, expected output) for the first bash block and the walkthrough's."""
    found = blocks(markdown)
    steps = []
    for i, (heading, lang, text) in enumerate(found):
        first = not steps and lang == "bash"
        if lang == "bash" and (first or heading.startswith("Walkthrough")):
            following = found[i + 1] if i + 1 < len(found) else ("", "", "")
            assert following[1] == "text", f"README: the block after `{text.splitlines()[0]}` must show its output"
            steps.append((text, following[2]))
    return steps


def _shims(folder: Path) -> Path:
    folder.mkdir()
    for name, run in (("python", '"$@"'), ("capcheck", '-m verifier.cli.main "$@"')):
        path = folder / name
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" {run}\n')
        path.chmod(0o755)
    return folder


def _in_order(expected: list[str], printed: list[str]) -> bool:
    lines = iter(printed)
    return all(any(line == want for line in lines) for want in expected)


def test_the_readme_commands_print_what_the_readme_shows(tmp_path):
    steps = runnable((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(steps) >= 2, "the README lost its first command block or its walkthrough"
    first_commands = steps[0][0]
    assert "|| " not in first_commands and "$?" not in first_commands  # no shell tricks around an exit code
    scratch = tmp_path / "newcomer"
    scratch.mkdir()
    (scratch / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PATH": f"{_shims(tmp_path / 'bin')}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    for commands, shown in steps:
        script = "\n".join(line for line in commands.splitlines() if not SETUP.match(line))
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=scratch, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{script}\nexit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        # `examples/` is a link here; in a user's clone it is a folder of the working directory, and a path
        # capcheck resolved through the link prints, for them, relative to it
        stdout, stderr = (text.replace(f"{ROOT}{os.sep}", "").splitlines() for text in (proc.stdout, proc.stderr))
        expected = [line for line in shown.splitlines() if line.strip()]
        missing = [line for line in expected if line not in stdout and line not in stderr]
        assert not missing, f"{script}\nREADME shows, capcheck did not print:\n" + "\n".join(missing) + \
            f"\n--- printed:\n{proc.stdout}\n{proc.stderr}"
        unshown = [line for line in stdout + stderr if line.strip() and line not in expected]
        assert not unshown, f"{script}\ncapcheck printed, README does not show:\n" + "\n".join(unshown)
        assert _in_order([line for line in expected if line in stdout], stdout), proc.stdout


def test_the_block_finder_reads_sections_and_outputs():
    text = ("# t\n```bash\na\n```\n```text\nA\n```\n## Walkthrough: x\n```bash\nb\n```\n```text\nB\n```\n"
            "## Other\n```bash\nc\n```\n")
    assert runnable(text) == [("a\n", "A\n"), ("b\n", "B\n")]


def test_ci_runs_exactly_the_readme_first_block():
    """`.ci/run` installs and runs what the README's first block says, with no exit-code trick."""
    first = runnable((ROOT / "README.md").read_text(encoding="utf-8"))[0][0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for line in first.splitlines():
        if line.strip() and not line.startswith("python -m venv"):
            assert line in ci, line
    assert "$?" not in ci and "|| test" not in ci
