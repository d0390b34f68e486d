"""The one exception type for errors a user can cause; the CLI prints its message without a traceback."""


class SlowFastError(Exception):
    """A user-facing error whose message is one line saying what is wrong and what to do."""
