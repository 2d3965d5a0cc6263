"""weightvault: a self-hosted vault and registry for machine-learning model weights.

``Vault`` (``weightvault.open``: the embedded vault, or a server's by URL) is imported on first
use, so that the command line (which imports this package first) starts without loading the
storage stack it may not need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from weightvault.open import Vault

from weightvault.core.version import VERSION as __version__

__all__ = ["Vault", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "Vault":
        from weightvault.open import Vault

        return Vault
    raise AttributeError(f"module 'weightvault' has no attribute {name!r}")
