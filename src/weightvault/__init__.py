"""weightvault: a self-hosted vault and registry for machine-learning model weights."""

from weightvault.vault.vault import Vault

__version__ = "0.1.0"
__all__ = ["Vault", "__version__"]
