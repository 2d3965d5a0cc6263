"""Making the vault home folder, for ``VaultState`` and for the light push alike.

Its own module so that ``vault.lightpush`` makes a home exactly as the full path does without
loading ``vault.state`` (which loads the whole vault stack).
"""

from __future__ import annotations

from pathlib import Path

from weightvault.core.errors import ConfigError
from weightvault.storage.oserror import os_error


def make_home(home: Path) -> None:
    """Create the vault home; a home that cannot be one is a one-line error naming it."""
    try:
        home.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"vault home {home} is not a folder (or lies under a file)") from None
    except OSError as exc:
        raise os_error(exc, f"creating vault home {home}") from exc
