"""The core of verification: a request pool, backends, prompts, answers, verdicts, the store, reports.

Nothing here knows about the person in the loop or the CLI.
"""
