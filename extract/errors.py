"""The error a run of stage one raises when it cannot start or go on."""
from __future__ import annotations


class ExtractError(RuntimeError):
    """A run that cannot start or go on (bad inputs, incompatible store); the message says why."""
