"""The shared parts of the `capcheck` command: the typer app, the consoles,
the exit codes, and the one place where typed errors become one line.

Commands live in `cmd_*` modules that register on `app`; `verifier.cli.main`
imports them all. Heavy modules (torch, diffusers, openai) are imported
only inside the commands that need them, so `capcheck --help` stays instant.
"""

from __future__ import annotations

import errno
import functools
import os
import shlex
import sqlite3
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text
from typer._click.exceptions import UsageError  # typer carries its own click: its UsageError, not click's
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from captions.errors import CaptionsError
from verifier.errors import BackendUnavailable

# `capcheck --help` lists the commands in the order a person uses them, not
# the order the modules happen to register them; a command not named here
# (a new one) comes after these.
WORKFLOW = ("run", "init", "build", "lint", "verify", "apply", "undo", "route", "review", "ingest", "agreement", "plan",
            "preflight", "train", "eval", "demo-server")

# typer shows a value's Python type (`<str>`, `<list[str]>`, and `<bool>` on
# flags, which makes people type `--dry-run true`); these read as the value.
_METAVARS = {"<path>": "PATH", "<str>": "TEXT", "<list[str]>": "TEXT", "<int>": "N", "<float>": "NUMBER"}


def _readable(params: list, ctx) -> list:
    for param in params:
        if isinstance(param, TyperOption) and param.metavar is None:
            if param.is_flag:
                param.metavar = ""  # a flag takes no value: show none
            else:
                shown = param.display_type(ctx)
                param.metavar = _METAVARS.get(shown, shown.strip("<>"))
        elif isinstance(param, TyperArgument):
            param.metavar = param.metavar or param.name.upper()
            param.display_type_rich = _no_type  # the name says it (DATASET); no `<path>` beside it
    return params


def _no_type(ctx) -> None:
    return None


def _help_flag(option: TyperOption | None) -> TyperOption | None:
    """`--help` defaults to False, not None: typer (0.29) coerces a None it meets through a pydantic
    TypeAdapter, so the group's unused `--help` imported pydantic (0.2 s) before `capcheck verify --help`
    printed a line."""
    if option is not None:
        option.default = False
    return option


class Command(TyperCommand):
    def get_params(self, ctx):
        return _readable(super().get_params(ctx), ctx)

    def get_help_option(self, ctx):
        return _help_flag(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx) -> list[str]:
        """`capcheck apply [OPTIONS] DATASET` (typer writes `{dataset}`)."""
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(param.metavar if param.required else f"[{param.metavar}]")
        return pieces


class Group(TyperGroup):
    def get_params(self, ctx):
        return _readable(super().get_params(ctx), ctx)

    def get_help_option(self, ctx):
        return _help_flag(super().get_help_option(ctx))

    def invoke(self, ctx):
        """A value typer cannot parse (`--image-size abc`, a missing DATASET) is one line and exit 2, like
        every other bad input, not click's usage text and a boxed panel."""
        try:
            return super().invoke(ctx)
        except UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "capcheck"
            err.print(labelled("error:", "red", exc.format_message(), f" (see `{where} --help`)"), soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    def list_commands(self, ctx) -> list[str]:
        names = list(self.commands)
        return sorted(names, key=lambda n: WORKFLOW.index(n) if n in WORKFLOW else len(WORKFLOW) + names.index(n))


class App(typer.Typer):
    """Every command gets the readable help (`Command`) unless it names its own class."""

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(
    name="capcheck",
    cls=Group,
    help="Make a LoRA training set honest: build captions, lint them, verify them against the images, "
         "let a person settle what the model is unsure of, then train. Start with `capcheck run`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("capcheck")
        except PackageNotFoundError:  # run from a source tree that was never installed
            found = "unknown (not installed)"
        typer.echo(f"capcheck {found}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", help="Show the version and exit.", is_eager=True,
                                          callback=_version)] = False,
) -> None:
    pass


# What capcheck prints is mostly the user's own text (captions, tags, file names), so both consoles print
# literally: no markup (`[red hat]` is a tag, and rich swallowed it) and no emoji codes (`:d`, `:o` and
# `tag:glasses:` are Danbooru tags, never pictures). Colour comes only from `labelled` (a Text) or `style=`.
out = Console(highlight=False, soft_wrap=True, emoji=False, markup=False)  # a summary line must not wrap in a log
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False, markup=False)


def labelled(label: str, style: str, text: object = "", after: str = "") -> Text:
    """`label` in `style`, then `text` exactly as it is, then `after` (plain)."""
    return Text.assemble((label, style), " " if text else "", str(text), after)

EXIT_FINDINGS = 1  # lint errors, invalid sidecars
EXIT_BAD_INPUT = 2  # a file or an option we cannot use
EXIT_NO_MODEL = 4  # the vision model could not be used at all (key, model, server, executable)
EXIT_NO_GPU = 5  # --processes N with fewer than N GPUs
EXIT_INTERRUPTED = 130  # Ctrl-C; everything answered so far is kept

PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", metavar="POLICY.yaml", help="Caption policy YAML "
                                                "(default: the one the last verify of DATASET used, else "
                                                "DATASET/.capcheck/policy.yaml, else the built-in generic policy).")]
# Every command that takes aspects takes `--aspects a,b`; the old spellings
# still work, unlisted.
OldAspectOpt = Annotated[str | None, typer.Option("--aspect", hidden=True)]


def handled(fn):
    """Render the library's typed errors once, as `error: <file>: <problem>`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BackendUnavailable as exc:
            error_line(exc)
            raise typer.Exit(EXIT_NO_MODEL) from None
        except CaptionsError as exc:
            error_line(exc)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except sqlite3.Error as exc:  # a store read outside the Store's own wrapper (a lazy cursor)
            from verifier.core.store import DB_NAME, STATE_DIR, store_error

            error_line(store_error(Path('DATASET', STATE_DIR, DB_NAME), exc))
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except OSError as exc:
            if exc.errno not in _DISK_ERRNOS:
                raise
            # A full disk where no typed error caught it (a thumbnail, a folder): one line, the file named.
            error_line(f"{exc.filename or 'disk'}: {exc.strerror or exc}: free some disk space and run again")
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper


def error_line(problem: object) -> None:
    """`error: <problem>` on stderr, once.

    In a launched run (`--processes N`, torchrun) only rank 0 prints; another
    rank's error must still reach the user, or a failure of that rank alone
    would be a bare exit status. Under `--processes` it goes to the file the
    launcher reads back and prints (`trainer.launch`); under the user's own
    launcher, to stderr as `rank N: error: …`, the way torchrun's ranks speak.
    """
    rank, folder = os.environ.get("RANK", "0"), os.environ.get("CAPCHECK_RANK_ERRORS")
    line = f"rank {rank}: error: {problem}"
    if folder:  # rank 0's too: the launcher then knows it was said, and says no other rank's
        try:
            Path(folder, f"rank-{rank}.txt").write_text(line, encoding="utf-8")
            if rank != "0":
                return
        except OSError:  # the launcher's folder is gone: say it here instead
            pass
    if rank == "0":
        err.print(labelled("error:", "red", problem), soft_wrap=True)
        return
    was, err.quiet = err.quiet, False
    try:
        err.print(line, soft_wrap=True, markup=False, style="red")
    finally:
        err.quiet = was


_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def dataset_policy(policy: Path | None, root: Path | None, store=None):
    """The policy a command uses, by the one rule (`verifier.core.policy_rule`),
    and the line that says which and why (on stderr); `store`: when open."""
    from verifier.core.policy_rule import choose

    chosen = choose(policy, root, store)
    err.print(chosen.how, soft_wrap=True)
    return chosen.policy


def quoted(path: Path | str) -> str:
    """A path as it must appear inside a command a person will paste into a shell."""
    return shlex.quote(str(path))


def comma_list(value: str | None, old: str | None = None, old_name: str = "") -> list[str] | None:
    """`--aspects a,b` (or its old spelling, kept as a hidden alias) as a list; None when neither is given."""
    if value is not None and old is not None:
        raise CaptionsError(None, f"give --aspects or {old_name}, not both")
    chosen = value if value is not None else old
    if chosen is None:
        return None
    return [a.strip() for a in chosen.split(",") if a.strip()]


def note(message: str) -> None:
    """A line on stderr a person should read, printed literally (it names files)."""
    err.print(f"note: {message}", soft_wrap=True, markup=False, style="yellow")


def launch_ranks(processes: int, device: str, argv: list[str], interrupted: str) -> int:
    """`capcheck … --processes N`: this command's argv as N ranks (`trainer.launch`); their exit status.
    Too few GPUs is one line and exit 5; another rank's error (rank 0 printed its own) and, on Ctrl-C,
    `interrupted` are said here."""
    from trainer.dist import NotEnoughDevices
    from trainer.launch import check_devices, launch

    try:
        check_devices(processes, device)
    except NotEnoughDevices as exc:
        err.print(f"error: {exc}", soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_NO_GPU) from None
    ended = launch(processes, argv)
    if ended.error:  # another rank failed alone; rank 0 was stopped with it
        err.print(ended.error, soft_wrap=True, markup=False, style="red")
    if ended.code == EXIT_INTERRUPTED:  # the launcher stopped every rank
        err.print(interrupted, soft_wrap=True, markup=False)
    return ended.code


def writing(root: Path, command: str):
    """The store for a command that writes the dataset: the dataset lock held,
    a crash's leftovers settled (`verifier.core.writer.writing`), notes on stderr."""
    from verifier.core.writer import writing as store_writing

    return store_writing(root, command, note)


def dataset_path(path: Path, file_ok: bool = False) -> Path:
    """DATASET as given, once it is a folder (or, with `file_ok`, a file): else one line, exit 2."""
    if not path.exists():
        raise CaptionsError(path, "no such dataset folder")
    if not file_ok and not path.is_dir():
        raise CaptionsError(path, "not a folder: give the dataset folder (the one holding the images)")
    return path
