"""Errors that reach the user as one clear line (no traceback)."""


class UserError(Exception):
    """Bad input from the user: the message names the file/field and what to do.

    The CLI prints ``str(error)`` on one line and exits with ``exit_code``.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(message.split()))
