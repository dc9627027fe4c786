"""`python -m verifier.cli` runs the `capcheck` command."""

from verifier.cli.main import main

main()
