"""The live progress bars on stderr: verify's, eval's and train's.

A module of their own so that a command imports rich's progress machinery
(about 12 ms with rich.live) only when it runs, not when `capcheck --help`
lists it (issue 19).
"""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.text import Text

from verifier.cli.console import err


class _Rate(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f}/s" if task.speed else "–/s", style="progress.data.speed")


class Live:
    """verify's bar: done/total, ok/fix/refused/error, rate, ETA."""

    def __init__(self) -> None:
        from verifier.core.verdict import STATUSES

        self.counts = dict.fromkeys(STATUSES, 0)
        self.progress = Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[tally]}"), _Rate(), TimeRemainingColumn(),
                                 console=err, transient=False, disable=not err.is_terminal)
        self.task = self.progress.add_task("verify", total=None, tally="")

    def plan(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def __call__(self, result) -> None:
        from verifier.core.verdict import ERROR, FIX, OK, REFUSED

        self.counts[result.verdict.status] += 1
        tally = (f"[green]ok {self.counts[OK]}[/] [yellow]fix {self.counts[FIX]}[/] "
                 f"[magenta]refused {self.counts[REFUSED]}[/] [red]error {self.counts[ERROR]}[/]")
        self.progress.update(self.task, advance=1, tally=tally)


class EvalProgress:
    """eval's bars: samples scored, and the renderer's progress once it renders."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err,
                                 transient=True, disable=not err.is_terminal)
        self.task = self.progress.add_task("eval", total=None)
        self.rendering = None

    def render(self, done: int, total: int) -> None:
        """The renderer's progress (samples rendered of those missing)."""
        if self.rendering is None:
            self.rendering = self.progress.add_task("render", total=total)
        self.progress.update(self.rendering, completed=done, total=total)

    def plan(self, total: int) -> None:
        self.progress.update(self.task, total=total)

    def __call__(self, result) -> None:
        self.progress.update(self.task, advance=1)


def train_progress():
    """A rich bar for training (loss, it/s, ETA) and the callback that moves it."""
    progress = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                        TimeRemainingColumn(), console=err, disable=not err.is_terminal)
    task = progress.add_task("train", total=None, info="")

    def step(s) -> None:
        progress.update(task, completed=s.step, total=s.total_steps,
                        info=f"epoch {s.epoch} loss {s.loss:.4f} {s.speed:.2f} it/s")

    return progress, step
