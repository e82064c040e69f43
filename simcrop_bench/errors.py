"""User-facing errors.

Anything raised as a :class:`UserError` is reported by the CLI as one line
(``error: <message>``) with a non-zero exit and no traceback. Messages name the
file or value at fault and what is wrong with it.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by the user's input, reported without a traceback."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration key or value is invalid."""


class RegistryError(UserError):
    """A method or task name is unknown, or a plugin cannot be loaded."""


class DataError(UserError):
    """A data root, split file or volume is missing or unreadable."""
