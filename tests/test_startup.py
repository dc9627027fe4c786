"""What `capcheck` imports before it does anything: `--help` and a command's
start-up must not pay for libraries they do not use (issue 19).

Checked by the modules loaded, in a fresh interpreter, not by a timer: the
time is measured by bench/startup_bench.py."""

import json
import subprocess
import sys

# The policy's models and YAML, images, HTTP, the trainer's stack; asyncio (verify's pool, 40 ms) and rich's
# live progress bars, which only a running command draws.
HEAVY = ("pydantic", "yaml", "PIL", "openai", "httpx2", "torch", "diffusers", "peft", "numpy", "asyncio",
         "rich.progress", "rich.live", "captions.policy", "captions.lint", "verifier.core.store")

COMMANDS = ("run", "init", "build", "lint", "verify", "apply", "undo", "route", "review", "ingest", "agreement",
            "plan", "preflight", "train", "eval", "demo-server")

# Each argv in turn in one interpreter: what each one added to sys.modules is what it imported.
PROBE = """
import json, sys
from verifier.cli.main import main
found = {{}}
for argv in {argvs!r}:
    sys.argv = ["capcheck", *argv]
    try:
        main()
    except SystemExit:
        pass
    found[" ".join(argv)] = sorted(m for m in {heavy!r} if m in sys.modules)
print("LOADED", json.dumps(found))
"""


def loaded(*argvs: list[str]) -> dict[str, list[str]]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argvs=list(argvs), heavy=HEAVY)], capture_output=True,
                          text=True, timeout=120)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("LOADED")), None)
    assert line is not None, proc.stderr
    return json.loads(line.removeprefix("LOADED "))


def test_help_imports_no_policy_models_no_image_or_http_library():
    # pydantic and PyYAML came with the policy; asyncio and rich.progress with verify's progress bar
    assert loaded(["--help"]) == {"--help": []}


def test_a_command_help_imports_none_of_them():
    # typer (0.29) builds a pydantic TypeAdapter for an option whose value is None: the group's own unused
    # --help did, so `capcheck verify --help` paid 0.2 s for pydantic (console._help_flag)
    found = loaded(["verify", "--help"])
    assert found == {"verify --help": []}


def test_every_command_help_imports_none_of_them():
    found = loaded(*([name, "--help"] for name in COMMANDS))
    assert {argv: mods for argv, mods in found.items() if mods} == {}
    assert len(found) == len(COMMANDS)
