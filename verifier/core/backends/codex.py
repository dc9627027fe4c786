"""The Codex CLI as a backend: one `codex exec` subprocess per image (the seeds' setup).

    codex exec --skip-git-repo-check --ephemeral -s read-only [-m MODEL] -o ANSWER [--output-schema SCHEMA] - -i IMAGE

The prompt goes on stdin (`-`), before `-i`: `-i` takes several values and
would swallow a prompt placed after it. `-o` writes the last agent message,
which is the answer; `-s read-only` because verifying needs no writes;
`--ephemeral` because otherwise every image leaves a session file holding
the base64 image under `$CODEX_HOME/sessions`. The process runs in its own
session so a timeout or Ctrl-C kills it and anything it started.

What codex says on stderr is read by `verifier.core.backends.codex_output`:
its own `ERROR:` line decides whether a retry can help (codex already
retries 429 and 5xx itself), the header names the model that answered (the
verdicts are keyed by it), and `tokens used N` is the usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import tomllib
from pathlib import Path

from verifier.core.backends import ItemFailed, Reply, Request, Retryable
from verifier.core.backends.codex_output import CodexOutput
from verifier.errors import BackendUnavailable

REAP_WAIT = 5.0  # seconds a killed codex gets for its pipes to reach their end (milliseconds, measured)


class CodexBackend:
    name = "codex"
    timeout_grace = 5.0  # the pool waits this much past our own timeout, so ours (which keeps stderr) fires first

    def __init__(self, model: str | None = None, *, binary: str = "codex", timeout: float = 120.0):
        found = shutil.which(binary)
        if found is None:
            raise BackendUnavailable(binary, "Codex CLI not found on PATH (install it, or pass --codex-bin)")
        self.binary = found
        self.timeout = timeout
        self._model_arg = model if model and model != "default" else None
        self.model = self._model_arg or configured_model() or "default"

    def argv(self, answer: Path, image: Path, schema: Path | None) -> list[str]:
        args = [self.binary, "exec", "--skip-git-repo-check", "--ephemeral", "-s", "read-only"]
        if self._model_arg:
            args += ["-m", self._model_arg]
        args += ["-o", str(answer)]
        if schema is not None:
            args += ["--output-schema", str(schema)]
        return [*args, "-", "-i", str(image)]

    async def ask(self, request: Request) -> Reply:
        with tempfile.TemporaryDirectory(prefix="capcheck-codex-") as tmp:
            folder = Path(tmp)
            image = folder / ("image.png" if request.image.mime == "image/png" else "image.jpg")
            image.write_bytes(request.image.data)
            answer = folder / "answer.txt"
            schema = None
            if request.schema is not None:
                schema = folder / "schema.json"
                schema.write_text(json.dumps(request.schema))
            argv = self.argv(answer, image, schema)
            code, stdout, output = await self._run(argv, folder, request.prompt)
            if code != 0:
                raise self._failure(code, output)
            content = answer.read_text(encoding="utf-8") if answer.exists() else stdout
            if output.model and output.model != self.model:
                self.model = output.model  # what codex really used (its config may have changed)
            raw = json.dumps({"argv": [Path(argv[0]).name, *argv[1:]], "answer": content, "model": output.model,
                              "tokens_used": output.tokens, "stderr_tail": output.tail()})
            if not content.strip() and not answer.exists():
                raise ItemFailed(f"codex wrote no answer ({output.error_line() or 'nothing on stderr'})")
            return Reply(content, raw=raw, model=output.model, total_tokens=output.tokens)

    async def _run(self, argv: list[str], cwd: Path, prompt: str) -> tuple[int, str, CodexOutput]:
        """Run codex with our own deadline, reading stderr as it comes, so a
        timeout still tells what codex was doing ("waiting for network")."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=cwd, start_new_session=True)
        err = bytearray()

        async def read_err() -> None:
            while chunk := await proc.stderr.read(65536):
                err.extend(chunk)

        async def talk() -> bytes:
            proc.stdin.write(prompt.encode("utf-8"))
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.drain()
            proc.stdin.close()
            stdout, _ = await asyncio.gather(proc.stdout.read(), read_err())
            await proc.wait()
            return stdout

        try:
            async with asyncio.timeout(self.timeout):
                stdout = await talk()
        except TimeoutError:
            await _reap(proc)
            output = CodexOutput(err.decode("utf-8", "replace"))
            said = output.error_line()
            raise Retryable(f"no answer within {self.timeout:g} s" + (f" (codex: {said})" if said else ""),
                            connect=True if output.offline else None) from None
        except BaseException:  # Ctrl-C or the run cancelled: leave nothing running
            await _reap(proc)
            raise
        return proc.returncode, stdout.decode("utf-8", "replace"), CodexOutput(err.decode("utf-8", "replace"))

    def _failure(self, code: int, output: CodexOutput) -> Exception:
        said = output.error_line() or f"exited with {code} and said nothing"
        if output.fatal:
            return BackendUnavailable(self.binary, f"codex: {said}")
        return Retryable(f"codex: {said}", connect=output.offline)

    async def aclose(self) -> None:
        return None


def configured_model(environ: dict[str, str] | None = None) -> str | None:
    """The `model` of `$CODEX_HOME/config.toml` (what codex uses without -m),
    so a re-run can plan against the verdicts stored under it."""
    env = os.environ if environ is None else environ
    home = Path(env.get("CODEX_HOME") or Path.home() / ".codex")
    try:
        config = tomllib.loads((home / "config.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None
    model = config.get("model")
    return model if isinstance(model, str) and model else None


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Kill codex and all it started, and read its pipes to the end, so nothing
    is left running or open when the event loop closes (a pipe still open then
    is an `Event loop is closed` error from its transport, collected later).

    Codex's whole tree is one process group, and its pipes reach their end in
    milliseconds once it is killed; a second cancellation while this waits
    (the run stopping: the pool cancels the other requests, then asyncio.run
    cancels what is left) waits for that too, at most REAP_WAIT s, and is
    passed on after. Before, that second cancel left the pipes open."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    loop = asyncio.get_running_loop()
    finishing = asyncio.ensure_future(proc.communicate())
    deadline = loop.time() + REAP_WAIT
    cancelled = False
    while not finishing.done() and (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait_for(asyncio.shield(finishing), left)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # the pipes' own errors, or the wait's end: nothing more to do
            break
    if finishing.done():
        with contextlib.suppress(BaseException):
            finishing.exception()  # retrieved: not "never retrieved" at the loop's close
    else:
        finishing.cancel()
    if cancelled:
        raise asyncio.CancelledError
