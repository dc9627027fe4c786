"""A stand-in `codex` executable for the codex backend's tests.

Only for what the real CLI (tests/test_codex_real.py) cannot show: a
transient failure that codex does not retry itself, a process group killed
on timeout (by pid), a logged-out CLI. It insists on the argument order capcheck must use, the way the real CLI
would misread anything else: `exec` first, the prompt `-` (read from stdin)
BEFORE `-i IMAGE` (`-i` takes several values and would swallow a prompt
after it), `-s read-only`, `--skip-git-repo-check`, `-o FILE`, and
`--output-schema FILE` exactly when the protocol is observe. It answers from
the demo model's index, logs each call, and can be told to be slow or flaky.

Environment: FAKE_CODEX_INDEX (demo model index), FAKE_CODEX_POLICY,
FAKE_CODEX_LOG (JSON lines), FAKE_CODEX_SLEEP (seconds), FAKE_CODEX_FLAKY_DIR
(first call per image exits 1), FAKE_CODEX_FAIL (exit 1 with this stderr).
"""

import json
import os
import sys
import time
from pathlib import Path

HEADER = "OpenAI Codex v0.169.0 (fake)\n--------\nmodel: fake-model\n--------\n"


def fail(message: str, code: int = 2) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


def parse(argv: list[str]) -> dict:
    if not argv or argv[0] != "exec":
        fail(f"unexpected argument '{argv[0] if argv else ''}': expected 'exec'")
    args = argv[1:]
    if len(args) < 3 or args[-2] != "-i" or args[-3] != "-":
        fail("unexpected argument order: the prompt '-' must come before '-i IMAGE', and '-i' last")
    opts: dict = {"image": args[-1], "flags": []}
    rest = args[:-3]
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-s", "--sandbox", "-m", "--model", "-o", "--output-last-message", "--output-schema"):
            if i + 1 >= len(rest):
                fail(f"a value is required for '{a}'")
            opts[a.lstrip("-")] = rest[i + 1]
            i += 2
        elif a in ("--skip-git-repo-check", "--ephemeral"):
            opts["flags"].append(a)
            i += 1
        else:
            fail(f"unexpected argument '{a}'")
    if opts.get("s") != "read-only":
        fail("verification must run with -s read-only")
    if "--skip-git-repo-check" not in opts["flags"]:
        fail("Not inside a trusted directory and --skip-git-repo-check was not specified.", 1)
    if "--ephemeral" not in opts["flags"]:
        fail("capcheck must pass --ephemeral (each session file would keep a copy of the image)")
    if "o" not in opts:
        fail("capcheck reads the answer from -o FILE; it was not given")
    return opts


def main() -> None:
    opts = parse(sys.argv[1:])
    prompt = sys.stdin.read()
    log = os.environ.get("FAKE_CODEX_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"argv": sys.argv[1:], "prompt_chars": len(prompt), "pid": os.getpid()}) + "\n")
    if not prompt.strip():
        fail("No prompt provided via stdin.", 1)
    if os.environ.get("FAKE_CODEX_FAIL"):  # as codex prints its final error: twice, after the header
        sys.stderr.write(HEADER + f"ERROR: {os.environ['FAKE_CODEX_FAIL']}\n" * 2)
        sys.exit(1)
    time.sleep(float(os.environ.get("FAKE_CODEX_SLEEP", "0")))

    from captions.policy import load_policy
    from verifier.demo.model import DemoModel

    policy = load_policy(os.environ["FAKE_CODEX_POLICY"])
    model = DemoModel.load_index(Path(os.environ["FAKE_CODEX_INDEX"]), policy)
    known = model.identify(Path(opts["image"]).read_bytes())
    flaky = os.environ.get("FAKE_CODEX_FLAKY_DIR")
    if flaky and known is not None:
        mark = Path(flaky) / known.key.replace("/", "_")
        if not mark.exists():
            mark.write_text("x")
            sys.stderr.write(HEADER + "ERROR: stream disconnected before completion\n" * 2)
            sys.exit(1)
    if "output-schema" in opts:
        schema = json.loads(Path(opts["output-schema"]).read_text())
        answer = json.dumps(model.answer_schema(known, schema))
    else:
        answer = model.fixline(known, prompt)
    Path(opts["o"]).write_text(answer + "\n")
    sys.stdout.write(answer + "\n")


if __name__ == "__main__":
    main()
