"""Public home of the error hierarchy (``from weightvault.errors import ModelNotFoundError``)."""

from weightvault.core.errors import *  # noqa: F403
from weightvault.core.errors import ERROR_TABLE, exit_code_for, http_status_for

__all__ = [name for name in dir() if name.endswith("Error")] + [
    "ERROR_TABLE",
    "exit_code_for",
    "http_status_for",
]
