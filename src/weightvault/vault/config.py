"""Settings: defaults < config file < ``WEIGHTVAULT_*`` environment < explicit arguments.

The config file may use our flat keys or the seed's shape (a ``model_weights`` section with
``cache_enabled``, ``cache_directory``, ``cache_max_size_gb``, ``checksum_algorithm``, …);
the cloud sections (``aws``, ``gcp``, ``azure``) are kept in ``sections`` for the layers
that read them. Any other key, in the file or as a ``WEIGHTVAULT_*`` variable, is an error
(``config_schema``). ``encryption`` is a section of its own (:class:`EncryptionSettings`); in the
environment, ``WEIGHTVAULT_ENCRYPTION`` takes it as JSON.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from weightvault.core.errors import ConfigError
from weightvault.vault.cachefill import CacheFill
from weightvault.vault.config_schema import (
    SEED_MODEL_WEIGHTS_KEYS,
    check_env_keys,
    check_file_keys,
    strings_in,
)
from weightvault.vault.placement import LinkFallback, LinkMode

ENV_PREFIX = "WEIGHTVAULT_"
DEFAULT_HOME = Path("~/.weightvault")


class EncryptionSettings(BaseModel):
    """``encryption: {enabled: true, provider: {type: local_file, path: ...}}``.

    ``enabled`` decides whether models without keys get an encryption domain at their next
    push; a model that has one stays encrypted whatever this says. ``provider`` is the config
    of a ``weightvault.keys`` provider (``type`` plus its options); with no provider, the KEK
    is a local key file ``<home>/keys/kek.key``, created with mode 0600 on first use.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    provider: dict[str, Any] = Field(default_factory=dict)
    #: other providers whose KEKs may open keyrings (an old KEK during a rotation, a KEK another
    #: machine rotated to); only these and ``provider`` are ever used, never what a keyring says
    trusted_providers: list[dict[str, Any]] = Field(default_factory=list)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    home: Path
    store_url: str | None = None
    database_url: str | None = None
    cache_enabled: bool = True
    cache_directory: Path | None = None
    cache_max_size_gb: float = Field(20.0, ge=0)
    #: when a pull adds the files it rebuilds to the cache: "auto" (from a remote store, or when
    #: the placement shares the entry: hardlink, clone) or "always"; see ``vault/cachefill.py``
    cache_fill: CacheFill = "auto"
    #: cache entries of plain models: "shared" (files 0444, folders per the umask) or "private"
    #: (folders 0700, files 0400); an encrypted model's entries are always private
    cache_permissions: Literal["shared", "private"] = "shared"
    #: how a pull places cached files: "auto" (clone, else copy across filesystems, else
    #: ``link_fallback``), "reflink", "hardlink" or "copy"; see ``vault/placement.py``
    link_mode: LinkMode = "auto"
    #: what ``auto`` does on one filesystem without clones (ext4): "copy" (independent files) or
    #: "hardlink" (read-only, shared with the cache and every other pulled folder)
    link_fallback: LinkFallback = "copy"
    checksum_algorithm: Literal["sha256"] = "sha256"
    pack_size_mb: int = Field(64, ge=1, le=4096)
    gc_grace_seconds: float = Field(3600.0, ge=0)
    #: gc copies the live chunks out of packs whose live fraction is below this, then deletes them
    gc_repack_threshold: float = Field(0.9, ge=0, le=1)
    #: a store lock not refreshed for this long is stale (its holder died or hangs)
    lock_stale_seconds: float = Field(1800.0, gt=0)
    #: how long a push waits for a gc's exclusive lock (and gc for running pushes) before failing
    lock_wait_seconds: float = Field(900.0, ge=0)
    workers: int = Field(2, ge=1, le=64)
    #: name of the primary replica: "local" (the home's store folder) or a seed section (aws, gcp, azure)
    storage_type: str = "local"
    #: secondary replicas by name -> storage URL (s3://…, gs://…, az://…, file:///…)
    replicas: dict[str, str] = Field(default_factory=dict)
    #: replicate every push to the secondaries; on unless explicitly turned off (a configured
    #: replica that silently receives nothing is a surprise, not a default)
    sync_enabled: bool = True
    #: "inline": a push returns once every replica has it; "background": once the primary has it
    replication: Literal["inline", "background"] = "inline"
    #: how new chunks are stored: "none" (as they are), "zstd" (plain zstd, level 1), "float"
    #: (byte planes of bf16/fp16/fp32 tensors of safetensors files, plain zstd for the rest);
    #: a chunk that does not shrink is stored as it is. Off by default: see README.
    compression: Literal["none", "zstd", "float"] = "none"
    encryption: EncryptionSettings = Field(default_factory=EncryptionSettings)
    #: the seed's flags; each means what it says or is refused (``_seed_flags``)
    encryption_enabled: bool | None = None
    versioning_enabled: bool = True
    access_control_enabled: bool = False
    #: refuse every push holding a pickle that imports something dangerous (as ``push --refuse-unsafe``)
    refuse_unsafe_pickles: bool = False
    #: let ``import hf --endpoint`` reach loopback, link-local and private addresses (another vault
    #: on the internal network as the upstream); off, an import can only reach public hosts
    import_allow_private_endpoints: bool = False
    sections: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _seed_flags(self) -> Settings:
        """``encryption_enabled: true`` turns encryption on (with the configured provider, else a
        key file in the home, created 0600 on first use); it may not contradict ``encryption``.
        Every version is kept, so ``versioning_enabled: false`` cannot be honoured."""
        flag = self.encryption_enabled
        if flag is not None:
            if "enabled" in self.encryption.model_fields_set and self.encryption.enabled != flag:
                raise ValueError(
                    f"encryption_enabled: {str(flag).lower()} contradicts encryption.enabled: "
                    f"{str(self.encryption.enabled).lower()}"
                )
            self.encryption.enabled = flag
        if not self.versioning_enabled:
            raise ValueError(
                "versioning_enabled: false cannot be honoured: weightvault keeps every version "
                "(delete old ones with rm, then gc)"
            )
        return self

    @property
    def store_path(self) -> Path:
        return self.home / "store"

    @property
    def cache_path(self) -> Path:
        path = self.cache_directory or Path("cache")
        return path if path.is_absolute() else self.home / path

    @property
    def cache_max_bytes(self) -> int:
        return int(self.cache_max_size_gb * (1 << 30))

    @property
    def pack_size(self) -> int:
        return self.pack_size_mb << 20

    @property
    def default_key_file(self) -> Path:
        return self.home / "keys" / "kek.key"

    def trusted_provider_configs(self) -> list[dict[str, Any]]:
        """The providers besides ``key_provider_config`` that may open keyrings."""
        return [dict(p) for p in self.encryption.trusted_providers]

    def key_provider_config(self) -> dict[str, Any]:
        """The key provider's config, the default local key file filled in."""
        config = dict(self.encryption.provider)
        config.setdefault("type", "local_file")
        if config["type"] == "local_file":
            config.setdefault("path", str(self.default_key_file))
        return config


#: settings a file may hold at its top level; the seed's flags only inside ``model_weights``
_FLAT_KEYS = set(Settings.model_fields) - {"home", "sections"} - SEED_MODEL_WEIGHTS_KEYS


def _from_file(path: Path) -> dict[str, Any]:
    import yaml  # only a home with a config file pays for the YAML parser

    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        # never the offending text: the line may hold a passphrase or a connection string
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(getattr(exc, "problem", None) or "syntax error"))
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping")
    check_file_keys(raw, _FLAT_KEYS, str(path))
    values: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "model_weights" and isinstance(value, dict):
            for k, v in value.items():
                if k in _FLAT_KEYS or k in SEED_MODEL_WEIGHTS_KEYS:
                    values[k] = v
            sections[key] = value
        elif key in _FLAT_KEYS:
            values[key] = value
        else:
            sections[key] = value
    values["sections"] = sections
    return values


def _parse_mapping(key: str, text: str) -> dict[str, str]:
    """``name=url,name=url`` (or a JSON object) from an environment variable."""
    text = text.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} is not valid JSON: {exc}") from None
        return {str(k): str(v) for k, v in parsed.items()}
    out: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, url = pair.partition("=")
        if not sep or not name or not url:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be name=url pairs separated by commas")
        out[name.strip()] = url.strip()
    return out


def _parse_json(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{key.upper()} is not valid JSON: {exc}") from None


def load_settings(
    home: Path | str | None = None, config_file: Path | str | None = None, **overrides: Any
) -> Settings:
    env = os.environ
    home_path = Path(home or env.get(f"{ENV_PREFIX}HOME") or DEFAULT_HOME).expanduser().absolute()
    cfg = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    values: dict[str, Any] = {}
    if cfg:
        cfg_path = Path(cfg).expanduser()
        if not cfg_path.is_file():
            raise ConfigError(f"config file {cfg_path} does not exist")
        values.update(_from_file(cfg_path))
    elif (home_path / "config.yaml").is_file():
        values.update(_from_file(home_path / "config.yaml"))
    for key in _FLAT_KEYS:
        if (val := env.get(f"{ENV_PREFIX}{key.upper()}")) is not None:
            if key == "replicas":
                values[key] = _parse_mapping(key, val)
            elif key == "encryption":
                values[key] = _parse_json(key, val)
            else:
                values[key] = val
    values.update({k: v for k, v in overrides.items() if v is not None})
    check_env_keys(env, ENV_PREFIX, _FLAT_KEYS, strings_in(values))
    values["home"] = home_path
    try:
        return Settings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if not where:  # a rule about several settings (``Settings._seed_flags``)
            raise ConfigError(f"invalid settings: {first['msg'].removeprefix('Value error, ')}") from None
        raise ConfigError(f"invalid setting {where}: {first['msg']}") from None
