"""Which stores a vault writes to and reads from: a primary plus optional secondaries.

The primary is the home's store folder (``storage_type: local``) or a seed section (``aws``,
``gcp``, ``azure``). Secondaries are every other enabled seed section and every entry of
``replicas`` (name -> URL). With one store there is no ReplicaSet at all: the embedded default
pays nothing for replication it does not use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from weightvault.core.errors import ConfigError
from weightvault.storage.backend import Backend
from weightvault.storage.factory import backend_from_seed_config, open_backend
from weightvault.storage.local import LocalBackend
from weightvault.storage.replica import ReplicaSet, WritePolicy
from weightvault.vault.config import Settings

CLOUD_SECTIONS = ("aws", "gcp", "azure")


def _enabled(section: Any) -> bool:
    return (
        isinstance(section, Mapping)
        and section.get("enabled", True) is not False
        and bool(section.get("model_weights"))
    )


def _seed_backend(name: str, section: Mapping[str, Any]) -> Backend:
    """A seed section's backend; an optional ``retry: {attempts, base_delay, max_delay, deadline}``
    map tunes its retry budget."""
    retry = section.get("retry") or {}
    if not isinstance(retry, Mapping):
        raise ConfigError(f"{name}.retry must be a mapping")
    return backend_from_seed_config(name, section, **{f"retry_{k}": v for k, v in retry.items()})


def open_stores(settings: Settings) -> tuple[Backend, ReplicaSet | None]:
    """(the backend the vault uses, the replica set when there is more than one store)."""
    sections = settings.sections
    primary_name = settings.storage_type
    if settings.store_url:
        primary: Backend = open_backend(settings.store_url)
    elif primary_name == "local":
        primary = LocalBackend(settings.store_path)
    elif primary_name in CLOUD_SECTIONS:
        if not _enabled(sections.get(primary_name)):
            raise ConfigError(f"storage_type is {primary_name!r} but the {primary_name} section is missing")
        primary = _seed_backend(primary_name, sections[primary_name])
    else:
        raise ConfigError(f"unknown storage_type {primary_name!r} (local, aws, gcp, azure)")
    secondaries: dict[str, Backend] = {}
    for name in CLOUD_SECTIONS:
        if name != primary_name and _enabled(sections.get(name)):
            secondaries[name] = _seed_backend(name, sections[name])
    for name, url in settings.replicas.items():
        if name == primary_name or name in secondaries:
            raise ConfigError(f"replica name {name!r} is used twice")
        secondaries[name] = open_backend(url)
    if not secondaries:
        return primary, None
    # Pushes write the primary only; replication copies a version once it is complete there.
    replicas = ReplicaSet(primary, secondaries, primary_name=primary_name, write_policy=WritePolicy.DEFERRED)
    return replicas, replicas
