"""A KEK kept in a local file (base64 of 32 random bytes), like an SSH private key.

The file is created with mode 0600 and a key file that group or others could read is
refused, the way ``ssh`` refuses one: a key readable by other users is not a secret.
Config: ``{"type": "local_file", "path": "/path/to/kek"}``.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from weightvault.keys._symmetric import KEK_LEN, SymmetricKekProvider, decode_kek
from weightvault.keys.provider import KeyNotFoundError, KeyProviderConfigError, config_str

NAME = "local_file"


class LocalFileKeyProvider(SymmetricKekProvider):
    name = NAME

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        super().__init__(_read_key_file(self.path))

    @classmethod
    def create(cls, path: str | Path) -> LocalFileKeyProvider:
        """Write a new random KEK to ``path`` (mode 0600); never overwrites an existing file."""
        p = Path(path).expanduser()
        text = base64.b64encode(os.urandom(KEK_LEN)) + b"\n"
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            raise KeyProviderConfigError(NAME, f"{p} exists; refusing to overwrite a key") from None
        except OSError as e:
            raise KeyProviderConfigError(NAME, f"cannot create key file {p}: {e.strerror}") from None
        try:
            os.fchmod(fd, 0o600)  # the umask may only remove bits, but be explicit
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        return cls(p)

    def params(self) -> dict[str, Any]:
        return {"type": NAME, "path": str(self.path)}


def _read_key_file(path: Path) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise KeyNotFoundError(NAME, f"key file {path} does not exist") from None
    except OSError as e:
        raise KeyNotFoundError(NAME, f"cannot open key file {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)  # of what was opened, so a swap after the check changes nothing
        if not stat.S_ISREG(st.st_mode):
            raise KeyProviderConfigError(NAME, f"{path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyProviderConfigError(
                NAME,
                f"key file {path} is accessible by group or others (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"run: chmod 600 {path}",
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return decode_kek(NAME, data, f"key file {path}")


def open_provider(config: Mapping[str, Any]) -> LocalFileKeyProvider:
    return LocalFileKeyProvider(config_str(NAME, config, "path"))
