"""A misspelt setting is an error naming it and the closest known key; the seed's shape is
accepted where the seed puts each key, and nowhere else."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightvault.core.errors import ConfigError
from weightvault.vault.config import load_settings

SEED_CONFIG = """
aws:
  enabled: false
  region: "us-west-2"
  model_weights:
    s3_bucket: "my-llm-models"
gcp:
  enabled: false
  project_id: "my-llm-project"
  region: "us-central1"
  model_weights:
    gcs_bucket: "my-llm-models"
model_weights:
  storage_type: "local"
  sync_enabled: true
  versioning_enabled: true
  access_control_enabled: true
  checksum_algorithm: "sha256"
  cache_enabled: true
  cache_directory: "weights_cache"
  cache_max_size_gb: 20
"""


def _load(tmp_path: Path, text: str) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    load_settings(tmp_path / "home", cfg)


def test_the_seed_config_is_accepted_as_written(tmp_path: Path) -> None:
    _load(tmp_path, SEED_CONFIG)


@pytest.mark.parametrize(
    ("text", "key", "closest"),
    [
        ("model_weights:\n  cache_max_sise_gb: 3\n", "cache_max_sise_gb", "cache_max_size_gb"),
        ("model_weights:\n  cache_enabeld: false\n", "cache_enabeld", "cache_enabled"),
        ("cache_enabeld: false\n", "cache_enabeld", "cache_enabled"),
        ("gc_grace_second: 10\n", "gc_grace_second", "gc_grace_seconds"),
        ("aws:\n  enabled: false\n  endpont_url: http://x\n", "endpont_url", "endpoint_url"),
        ("aws:\n  model_weights: {s3_buckett: b}\n", "s3_buckett", "s3_bucket"),
        ("gcp:\n  retry: {atempts: 3}\n", "atempts", "attempts"),
        ("encryption:\n  enabeld: true\n", "enabeld", "enabled"),
        # seed keys, but not where the seed defines them
        ("versioning_enabled: true\n", "versioning_enabled", None),
        ("region: us-west-2\n", "region", None),
        ("model_weights:\n  region: us-west-2\n", "region", None),
        ("aws:\n  versioning_enabled: true\n", "versioning_enabled", None),
    ],
)
def test_unknown_keys_are_errors_naming_the_closest(
    tmp_path: Path, text: str, key: str, closest: str | None
) -> None:
    with pytest.raises(ConfigError) as exc:
        _load(tmp_path, text)
    message = str(exc.value)
    assert f"'{key}'" in message and "closest known one is" in message
    if closest is not None:
        assert f"'{closest}'" in message


def test_unknown_environment_settings_are_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIGHTVAULT_TYPO_SETTING", "1")
    with pytest.raises(ConfigError, match="WEIGHTVAULT_TYPO_SETTING"):
        load_settings(tmp_path / "home")
    monkeypatch.delenv("WEIGHTVAULT_TYPO_SETTING")
    monkeypatch.setenv("WEIGHTVAULT_CACHE_MAX_SISE_GB", "1")
    with pytest.raises(ConfigError, match="closest known one is WEIGHTVAULT_CACHE_MAX_SIZE_GB"):
        load_settings(tmp_path / "home")


def test_known_and_referenced_environment_variables_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEIGHTVAULT_CACHE_MAX_SIZE_GB", "3")
    monkeypatch.setenv("WEIGHTVAULT_DEBUG", "1")
    monkeypatch.setenv("WEIGHTVAULT_TEAM_PASSPHRASE", "secret")  # named by the config below
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "encryption:\n  provider: {type: passphrase, passphrase_env: WEIGHTVAULT_TEAM_PASSPHRASE}\n"
    )
    assert load_settings(tmp_path / "home", cfg).cache_max_size_gb == 3
