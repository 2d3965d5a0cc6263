"""Helpers for tests and demos (synthetic files); not used by the runtime."""
