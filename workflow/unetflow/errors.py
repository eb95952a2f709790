"""The one exception type for problems a user can fix."""


class InputError(ValueError):
    """Bad input data or settings.

    The message names the file (or config key), what is wrong and what to do;
    command-line entry points print it without a traceback and exit non-zero.
    """
