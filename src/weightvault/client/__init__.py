"""The remote SDK: the embedded vault's Python API over a weightvault server's REST API."""

from weightvault.client.remote import RemoteVault

__all__ = ["RemoteVault"]
