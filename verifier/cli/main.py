"""The `capcheck` command: a thin typer layer over the library.

Each command group lives in its own `cmd_*` module and registers on the
shared app (`verifier.cli.console`); importing them here is what makes them
commands. Errors are typed in the library and rendered once, in
`console.handled`.
"""

from __future__ import annotations

from verifier.cli import (  # noqa: F401  (register)
    cmd_captions,
    cmd_eval,
    cmd_init,
    cmd_review,
    cmd_run,
    cmd_train,
    cmd_verify,
)
from verifier.cli.console import app


def main() -> None:
    app()


if __name__ == "__main__":
    main()
