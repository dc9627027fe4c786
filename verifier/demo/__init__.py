"""The demo stand-in: a labelled fake vision model that answers from a truth table, and its loopback server."""
