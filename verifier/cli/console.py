"""The shared parts of the `capcheck` command: the typer app, the consoles,
the exit codes, and the one place where typed errors become one line.

Commands live in `cmd_*` modules that register on `app`; `verifier.cli.main`
imports them all. Heavy modules (torch, diffusers, openai) are imported
only inside the commands that need them, so `capcheck --help` stays instant.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from captions.errors import CaptionsError
from verifier.errors import BackendUnavailable

app = typer.Typer(
    name="capcheck",
    help="Make a LoRA training set honest: build captions, lint them, verify them against the images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No emoji codes: `:d`, `:o` and `tag:glasses:` are text here (Danbooru tags), never pictures.
out = Console(highlight=False, soft_wrap=True, emoji=False)  # a summary line must not wrap in a log
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

EXIT_FINDINGS = 1  # lint errors, invalid sidecars
EXIT_BAD_INPUT = 2  # a file or an option we cannot use
EXIT_NO_MODEL = 4  # the vision model could not be used at all (key, model, server, executable)
EXIT_INTERRUPTED = 130  # Ctrl-C; everything answered so far is kept

PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", help="Caption policy YAML (default: "
                                                                       "DATASET/.capcheck/policy.yaml, else the "
                                                                       "built-in generic policy).")]


def handled(fn):
    """Render the library's typed errors once, as `error: <file>: <problem>`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BackendUnavailable as exc:
            err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(EXIT_NO_MODEL) from None
        except CaptionsError as exc:
            err.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def dataset_policy(policy: Path | None, root: Path | None):
    """The policy a command uses: `--policy`, else the dataset's own or the
    generic one, and then it says which (on stderr)."""
    from captions.generic import choose_policy

    chosen = choose_policy(policy, root)
    if policy is None:
        err.print(chosen.how, soft_wrap=True, markup=False)
    return chosen.policy


def dataset_path(path: Path) -> Path:
    if not path.exists():
        raise CaptionsError(path, "no such dataset folder")
    return path
