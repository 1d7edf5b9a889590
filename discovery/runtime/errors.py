"""User errors: one clear line on stderr, exit status 2, no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix (bad name, bad value, missing file).

    The CLI prints ``discovery: error: <message>`` and exits with status 2.
    """

    exit_code = 2
