"""Errors shared by every `aigc-edge` subcommand."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""
