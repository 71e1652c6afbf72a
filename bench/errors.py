"""User-facing errors: one line saying what is wrong and what to do; the CLI prints them without a traceback."""


class BenchError(Exception):
    """An error caused by input or environment that the user can fix."""
