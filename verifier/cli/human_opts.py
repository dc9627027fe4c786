"""What the human-loop commands share (`cmd_apply`, `cmd_review`): their options, the aspects asked for,
a diff printed in colour."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from verifier.cli.console import comma_list, out

ReportOpt = Annotated[Path | None, typer.Option("--report", "-r", help="Verify report (default: latest.jsonl).")]
AspectsOpt = Annotated[str | None, typer.Option("--aspects", metavar="LIST",
                                                help="Aspects, comma-separated, e.g. framing,view.")]


def asked_aspects(new: str | None, old: str | None, pol) -> list[str] | None:
    """The aspects asked for, each one the policy has (a typo lists the valid ones)."""
    from verifier.core.prompting import check_aspects

    names = comma_list(new, old, "--aspect")
    return check_aspects(pol, names) if names is not None else None


def print_diff(text: str) -> None:
    for line in text.splitlines():
        plus = line.startswith("+") and not line.startswith("+++")
        minus = line.startswith("-") and not line.startswith("---")
        out.print(line, style="green" if plus else "red" if minus else "dim", soft_wrap=True, markup=False)
