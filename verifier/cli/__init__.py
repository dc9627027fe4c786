"""The `capcheck` command: a thin typer layer over the library (`main`, `console`, one `cmd_*` per command group)."""
