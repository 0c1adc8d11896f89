"""Errors a user can act on, each with a stable exit status.

Exceptions of these types are caught by the `pos` command and printed as one
line; anything else is a bug and is reported as such (traceback only with
POS_DEBUG=1), never as a wall of Python for a cashier or a technician.
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "UsageError", "EXIT_OK", "EXIT_FAIL", "EXIT_CONFIG", "EXIT_UNAVAILABLE"]

EXIT_OK = 0
EXIT_FAIL = 1          # a check failed, an operation was refused
EXIT_CONFIG = 2        # configuration or command-line input is wrong
EXIT_UNAVAILABLE = 3   # a service we need (gateway, journal, device) is not there


class UserError(Exception):
    """Something the user can fix; the message says what and how."""

    exit_code = EXIT_FAIL

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(UserError):
    """The configuration file is missing, unreadable or has a bad value."""

    exit_code = EXIT_CONFIG


class UsageError(UserError):
    """A command-line argument is wrong."""

    exit_code = EXIT_CONFIG
