"""Issue 17, "The first block and the help": one policy rule for every
command, said in each command's output; the review page's body cap.

The rule (verifier/core/policy_rule.py): `--policy`, else the policy the
last verify of the dataset used, else DATASET/.capcheck/policy.yaml, else the
generic one. Before, `verify`/`run` skipped the second step and `apply`,
`route`, `ingest`, `review` took it, and only some commands said which.
"""

import shutil
import signal
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from verifier.cli.main import app
from verifier.demo.model import DemoModel
from verifier.demo.server import DemoServer

from conftest import EXAMPLES

POLICY = EXAMPLES / "keichan" / "policy.yaml"
TRUTH = EXAMPLES / "keichan" / "truth.json"
USED = "(the one the last verify of this dataset used)"


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def policy_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("policy: ")]


@pytest.fixture
def verified(tmp_path):
    """The example, built and verified with an explicit --policy (a copy, so the path is ours to delete)."""
    root = tmp_path / "keichan"
    shutil.copytree(EXAMPLES / "keichan" / "dataset", root)
    policy = tmp_path / "policy.yaml"
    shutil.copyfile(POLICY, policy)
    assert cli("build", root, "--policy", policy).exit_code == 0
    with DemoServer(DemoModel.load(TRUTH, root)) as server:
        result = cli("verify", root, "--policy", policy, "--model", "capcheck-demo", "--base-url", server.url)
    assert result.exit_code == 0, result.stderr
    assert policy_lines(result) == [f"policy: {policy} (--policy)"]
    return root, policy


COMMANDS = [("apply", "--dry-run"), ("route", "--aspects", "framing"), ("agreement",), ("lint",), ("build", "--dry-run"),
            ("verify", "--model", "capcheck-demo", "--base-url", "URL")]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_uses_the_policy_the_last_verify_used_and_says_so(verified, command):
    root, policy = verified
    (root / ".capcheck" / "policy.yaml").write_text("not: [a policy")  # the dataset's own comes after the record
    name, *options = command
    with DemoServer(DemoModel.load(TRUTH, root)) as server:
        result = cli(name, root, *[server.url if o == "URL" else o for o in options])
    assert result.exit_code in (0, 1), (result.stdout, result.stderr)
    assert policy_lines(result) == [f"policy: {policy} {USED}"]


def test_ingest_and_run_say_it_too(verified):
    root, policy = verified
    assert cli("route", root, "--aspects", "framing", "--all").exit_code == 0
    ingest = cli("ingest", root / "_review", "--aspects", "framing", "--dry-run")
    assert ingest.exit_code in (0, 1), ingest.stderr
    assert policy_lines(ingest) == [f"policy: {policy} {USED}"]
    run = cli("run", root, "--demo-model", TRUTH, "--no-train")
    assert policy_lines(run) == [f"policy: {policy} {USED}"], run.stderr


def test_a_recorded_policy_that_is_gone_is_an_error_not_another_policy(verified):
    root, policy = verified
    policy.unlink()
    for command in (("apply",), ("verify", "--model", "m")):
        result = cli(*command[:1], root, *command[1:])
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: {policy}: the policy the last verify of this dataset used is gone: restore it, or pass "
            "--policy POLICY.yaml")


def test_without_a_record_the_dataset_own_then_generic(tmp_path):
    root = tmp_path / "data"
    shutil.copytree(EXAMPLES / "keichan" / "dataset", root)
    generic = cli("build", root, "--dry-run")
    assert policy_lines(generic) == ["policy: the built-in generic policy (no --policy, no .capcheck/policy.yaml; "
                                     "`capcheck init` writes one to edit)"]
    (root / ".capcheck").mkdir()
    shutil.copyfile(POLICY, root / ".capcheck" / "policy.yaml")
    own = cli("build", root, "--dry-run")
    assert policy_lines(own) == [f"policy: {root / '.capcheck' / 'policy.yaml'} (the dataset's own)"]


def test_the_review_page_refuses_a_huge_body_without_a_traceback(tmp_path):
    """`Content-Length: 99999999999` was read whole: a MemoryError traceback in the terminal."""
    root = tmp_path / "data"
    shutil.copytree(EXAMPLES / "keichan" / "dataset", root)
    (root / "_review" / "framing" / "full_body").mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-m", "verifier.cli.main", "review", str(root), "--no-open"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()
        url = proc.stdout.readline().split()[1]
        host, port = url.removeprefix("http://").rstrip("/").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(f"POST /move HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                         "Content-Length: 99999999999\r\n\r\n".encode())
            answer = _read_all(conn)  # the server closes: the unread body is no next request
        assert answer.startswith("HTTP/1.0 413"), answer
        assert '{"error": "a request body is at most 65536 bytes (this one says 99999999999)"}' in answer
        with socket.create_connection((host, int(port)), timeout=30) as conn:  # and it still serves
            conn.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
            assert conn.recv(100).decode().startswith("HTTP/1.0 200")
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    assert "Traceback" not in stderr and "MemoryError" not in stderr, stderr


def _read_all(conn) -> str:
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks).decode()
