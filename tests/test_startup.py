"""What `capcheck` imports before it does anything: `--help` and a command's
start-up must not pay for libraries they do not use (issue 19)."""

import subprocess
import sys

HEAVY = ("pydantic", "yaml", "PIL", "openai", "httpx2", "torch", "diffusers", "peft", "numpy")

PROBE = """
import sys
from verifier.cli.main import main
sys.argv = ["capcheck", *{argv!r}]
try:
    main()
except SystemExit:
    pass
print("LOADED", sorted(m for m in {heavy!r} if m in sys.modules))
"""


def loaded(*argv: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=list(argv), heavy=HEAVY)], capture_output=True,
                          text=True, timeout=120)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("LOADED"))
    return eval(line.removeprefix("LOADED "))


def test_help_imports_no_policy_models_no_image_or_http_library():
    assert loaded("--help") == []  # pydantic and PyYAML came with the policy for every command's help


def test_a_command_help_imports_none_of_ours():
    # typer itself (typer/_adapters.py) imports pydantic to render a command's help; nothing else comes
    assert set(loaded("verify", "--help")) <= {"pydantic"}
    assert set(loaded("lint", "--help")) <= {"pydantic"}
