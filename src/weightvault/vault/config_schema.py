"""Which keys a config file and the environment may hold, so that a typo is an error, not a no-op.

A misspelt setting (``cache_max_sise_gb``) silently keeps the default the user meant to change,
so every key is checked against the shape below and an unknown one is named with the closest
known key. The seed's config shape is accepted as written, but only where the seed puts a key:
``versioning_enabled`` belongs in ``model_weights``, ``region`` in a cloud section.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from weightvault.core.errors import ConfigError

#: keys the seed's ``model_weights`` section defines that are not our flat settings
SEED_MODEL_WEIGHTS_KEYS = frozenset({"versioning_enabled", "access_control_enabled", "encryption_enabled"})
RETRY_KEYS = frozenset({"attempts", "base_delay", "max_delay", "deadline"})
ENCRYPTION_KEYS = frozenset({"enabled", "provider", "trusted_providers"})
_CLOUD_COMMON = frozenset({"enabled", "model_weights", "retry"})
#: cloud section -> (its own keys, the keys of its ``model_weights``); the seed's ``region`` and
#: ``project_id`` among them
CLOUD_SECTIONS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "aws": (
        _CLOUD_COMMON
        | {"region", "endpoint_url", "profile", "access_key_id", "secret_access_key", "session_token"},
        frozenset({"s3_bucket", "prefix"}),
    ),
    "gcp": (
        _CLOUD_COMMON | {"project_id", "region", "endpoint_url", "credentials_file", "anonymous"},
        frozenset({"gcs_bucket", "prefix"}),
    ),
    "azure": (
        _CLOUD_COMMON | {"connection_string", "account_url", "account_key", "sas_token"},
        frozenset({"container", "prefix"}),
    ),
}
#: ``WEIGHTVAULT_*`` variables that are not settings: the home, the config file, debugging (and
#: running on the portable fallbacks, ``storage.oscaps``) and the key providers' default variables
OTHER_ENV = frozenset(
    {
        "WEIGHTVAULT_HOME",
        "WEIGHTVAULT_CONFIG",
        "WEIGHTVAULT_DEBUG",
        "WEIGHTVAULT_PORTABLE",
        "WEIGHTVAULT_PASSPHRASE",
        "WEIGHTVAULT_KEK",
    }
)


def closest(key: str, known: Iterable[str]) -> str:
    """The known key most like ``key`` (there is always one to suggest)."""
    options = sorted(known)
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.0)
    return match[0] if match else options[0]


def _check(mapping: Mapping[str, Any], known: Iterable[str], where: str) -> None:
    allowed = frozenset(known)
    for key in mapping:
        if key not in allowed:
            raise ConfigError(
                f"unknown setting {key!r} in {where}; the closest known one is {closest(str(key), allowed)!r}"
            )


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a mapping")
    return value


def check_file_keys(raw: Mapping[str, Any], flat_keys: Iterable[str], source: str) -> None:
    """Refuse any key of a config file outside our settings and the seed's shape."""
    flat = frozenset(flat_keys)
    _check(raw, flat | {"model_weights"} | set(CLOUD_SECTIONS), source)
    for key, value in raw.items():
        if key == "model_weights":
            _check(
                _mapping(value, f"model_weights of {source}"),
                flat | SEED_MODEL_WEIGHTS_KEYS,
                f"model_weights of {source}",
            )
        elif key == "encryption" and isinstance(value, Mapping):
            _check(value, ENCRYPTION_KEYS, f"encryption of {source}")
        elif key in CLOUD_SECTIONS and value is not None:
            own, weights = CLOUD_SECTIONS[key]
            section = _mapping(value, f"{key} of {source}")
            _check(section, own, f"{key} of {source}")
            if section.get("model_weights") is not None:
                _check(
                    _mapping(section["model_weights"], f"{key}.model_weights of {source}"),
                    weights,
                    f"{key}.model_weights of {source}",
                )
            if section.get("retry") is not None:
                _check(
                    _mapping(section["retry"], f"{key}.retry of {source}"),
                    RETRY_KEYS,
                    f"{key}.retry of {source}",
                )


def check_env_keys(
    env: Mapping[str, str], prefix: str, flat_keys: Iterable[str], also: Iterable[str]
) -> None:
    """Refuse a ``WEIGHTVAULT_*`` variable that is no setting (``also``: variables the config
    itself names, such as a key provider's ``passphrase_env``)."""
    known = {f"{prefix}{k.upper()}" for k in flat_keys} | OTHER_ENV | set(also)
    for name in env:
        if name.startswith(prefix) and name not in known:
            raise ConfigError(
                f"unknown setting in the environment: {name}; the closest known one is {closest(name, known)}"
            )


def strings_in(value: Any) -> set[str]:
    """Every string a config value holds, at any depth (the variable names it refers to)."""
    if isinstance(value, str):
        return {value}
    if isinstance(value, Mapping):
        return {s for v in value.values() for s in strings_in(v)}
    if isinstance(value, list | tuple):
        return {s for v in value for s in strings_in(v)}
    return set()
