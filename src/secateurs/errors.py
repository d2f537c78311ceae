"""Errors that a user can fix. The CLI prints these as one line, without a traceback."""

from __future__ import annotations


class SecateursError(Exception):
    """Base of every error caused by the user's input or environment (not a bug in secateurs)."""


class DataError(SecateursError):
    """A dataset is missing, corrupt, or not what its spec promised."""


class ConfigError(SecateursError):
    """A configuration value or command-line option is not allowed."""


class TrainingDiverged(SecateursError):
    """The loss became NaN or infinite."""


class DataWarning(UserWarning):
    """Something about the data that works but is probably not what was meant."""
