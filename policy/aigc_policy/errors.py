"""Errors shared by every `aigc-edge` subcommand."""


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


def yaml_problem(exc: Exception) -> str:
    """'invalid YAML at line L, column C: what' of a PyYAML error, whose own text spans several lines."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or type(exc).__name__
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark else f"invalid YAML: {problem}"
