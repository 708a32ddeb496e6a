"""The one exception type for errors a user can cause.

The CLI prints its message as a single line and exits non-zero; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, files, hardware or environment, with a message that says what to do."""

    exit_code = 2
