"""The Codex CLI as a backend: one `codex exec` subprocess per image (the seeds' setup).

    codex exec --skip-git-repo-check -s read-only [-m MODEL] -o ANSWER [--output-schema SCHEMA] - -i IMAGE

The prompt goes on stdin (`-`), before `-i`: `-i` takes several values and
would swallow a prompt placed after it. `-o` writes the last agent message,
which is the answer; `-s read-only` because verifying needs no writes.
The process runs in its own session so a timeout or Ctrl-C kills it and
anything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

from verifier.core.backends import ItemFailed, Reply, Request, Retryable
from verifier.errors import BackendUnavailable

# stderr phrases that mean no later attempt will do better.
_FATAL = ("not logged in", "please log in", "login required", "unauthorized", "401", "invalid api key",
          "unknown model", "model_not_found", "unexpected argument", "unrecognized")


class CodexBackend:
    name = "codex"

    def __init__(self, model: str | None = None, *, binary: str = "codex"):
        found = shutil.which(binary)
        if found is None:
            raise BackendUnavailable(binary, "Codex CLI not found on PATH (install it, or pass --codex-bin)")
        self.binary = found
        self.model = model or "default"
        self._model_arg = model if model and model != "default" else None

    def argv(self, answer: Path, image: Path, schema: Path | None) -> list[str]:
        args = [self.binary, "exec", "--skip-git-repo-check", "-s", "read-only"]
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
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, cwd=folder, start_new_session=True)
            try:
                stdout, stderr = await proc.communicate(request.prompt.encode("utf-8"))
            except BaseException:  # timeout or Ctrl-C: leave nothing running
                _kill(proc)
                with contextlib.suppress(Exception):
                    await proc.wait()
                raise
            err_text = stderr.decode("utf-8", "replace")
            tail = err_text.strip()[-400:]
            if proc.returncode != 0:
                lowered = err_text.lower()
                if any(word in lowered for word in _FATAL):
                    raise BackendUnavailable(self.binary, f"codex exec failed: {tail.splitlines()[-1] if tail else ''}")
                raise Retryable(f"codex exited with {proc.returncode}: {tail[-200:]}")
            content = answer.read_text(encoding="utf-8") if answer.exists() else stdout.decode("utf-8", "replace")
            raw = json.dumps({"argv": [Path(argv[0]).name, *argv[1:]], "answer": content, "stderr_tail": tail})
            if not content.strip() and not answer.exists():
                raise ItemFailed(f"codex wrote no answer file; stderr: {tail[-200:]}")
            return Reply(content, raw=raw)

    async def aclose(self) -> None:
        return None


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
