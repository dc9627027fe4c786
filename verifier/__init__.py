"""Everything that talks to a vision model, the store, and the `capcheck` CLI."""
