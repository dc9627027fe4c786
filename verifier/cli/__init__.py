"""The `capcheck` command: a thin typer layer over the library (`main`, `console`, one `cmd_*` per command group)."""


def main() -> None:
    """The `capcheck` console script. It is here, not in `verifier.cli.main`, because multiprocessing
    runs the script again as `__mp_main__` in every worker that prepares images: importing this
    package costs nothing, importing every command (typer, rich, click) cost each worker 0.15 s of
    CPU at the start of a run and about 10 MiB (`python -m verifier.cli`, whose `__main__` is never
    run again, is the same)."""
    from verifier.cli.main import main as run

    run()
