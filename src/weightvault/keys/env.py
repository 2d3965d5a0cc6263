"""A KEK from an environment variable (base64 of 32 bytes), for containers and CI secrets.

Config: ``{"type": "env", "variable": "WEIGHTVAULT_KEK"}`` (the default variable).
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import Any

from weightvault.keys._symmetric import KEK_LEN, SymmetricKekProvider, decode_kek
from weightvault.keys.provider import KeyNotFoundError, config_str

NAME = "env"
DEFAULT_VARIABLE = "WEIGHTVAULT_KEK"


class EnvKeyProvider(SymmetricKekProvider):
    name = NAME

    def __init__(self, variable: str = DEFAULT_VARIABLE, environ: Mapping[str, str] | None = None) -> None:
        self.variable = variable
        env = os.environ if environ is None else environ
        text = env.get(variable)
        if not text:
            raise KeyNotFoundError(NAME, f"environment variable {variable} is not set")
        super().__init__(decode_kek(NAME, text, f"environment variable {variable}"))

    def params(self) -> dict[str, Any]:
        return {"type": NAME, "variable": self.variable}


def generate_key_text() -> str:
    """A new random KEK in the form the variable expects."""
    return base64.b64encode(os.urandom(KEK_LEN)).decode()


def open_provider(config: Mapping[str, Any]) -> EnvKeyProvider:
    return EnvKeyProvider(config_str(NAME, config, "variable", DEFAULT_VARIABLE))
