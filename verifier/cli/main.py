"""The `capcheck` command: a thin typer layer over the library.

Each command group lives in its own `cmd_*` module and registers on the
shared app (`verifier.cli.console`); importing them here is what makes them
commands. Errors are typed in the library and rendered once, in
`console.handled`.
"""

from __future__ import annotations

import gc

from verifier.cli import (  # noqa: F401  (register)
    cmd_apply,
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
    try:
        app()
    finally:
        # Everything is written and closed by now. Without this the interpreter's last collection
        # walks every object the SDK, pydantic and typer made (about 0.15 s of a verify run's exit,
        # after its reports are written); frozen objects are left to the process's end.
        gc.freeze()


if __name__ == "__main__":
    main()
