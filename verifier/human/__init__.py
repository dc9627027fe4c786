"""The human loop: apply and undo, route for a person, ingest their sorting, agreement, the training gate."""
