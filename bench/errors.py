"""User-facing errors: one line saying what is wrong and what to do; the CLI prints them without a traceback."""


class BenchError(Exception):
    """An error caused by input or environment that the user can fix."""


class DataProblem(BenchError):
    """A problem with a dataset on disk, with its status decided where it is found (never from message text)."""

    status = "malformed"


class MissingData(DataProblem):
    status = "missing"


class MalformedData(DataProblem):
    status = "malformed"
