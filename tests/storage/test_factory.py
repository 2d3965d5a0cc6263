"""URLs and seed-style config sections open the right backend, lazily."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import servers
import yaml
from targets import BUCKET, CloudTarget

from weightvault.core.errors import ConfigError, InvalidInputError
from weightvault.storage.factory import backend_from_seed_config, open_backend
from weightvault.storage.local import LocalBackend
from weightvault.storage.memory import MemoryBackend


def test_file_urls_and_plain_paths_open_local_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spaced = tmp_path / "with space"
    backend = open_backend(spaced.as_uri())  # file:///…/with%20space
    assert isinstance(backend, LocalBackend) and backend.root == spaced
    backend.put("k", b"v")
    assert open_backend(str(spaced)).get("k") == b"v"
    assert open_backend(backend.url).get("k") == b"v"  # url reopens the same store
    monkeypatch.chdir(tmp_path)
    relative = open_backend("relative/store")
    assert isinstance(relative, LocalBackend) and relative.root == tmp_path / "relative" / "store"
    for bad in ("file://otherhost/x", "file:relative/path"):
        with pytest.raises(ConfigError):
            open_backend(bad)
    with pytest.raises(ConfigError):
        open_backend(str(tmp_path), part_size=5)


def test_memory_urls_name_one_shared_store() -> None:
    name = f"memory://{uuid.uuid4().hex}"
    first = open_backend(name)
    assert isinstance(first, MemoryBackend) and open_backend(name) is first
    first.put("k", b"v")
    assert open_backend(name).get("k") == b"v"
    assert open_backend(f"memory://{uuid.uuid4().hex}") is not first


def test_cloud_urls_split_bucket_and_prefix(cloud: CloudTarget) -> None:
    backend = open_backend(f"{cloud.scheme}://{BUCKET}//deep/pre%20fix/", create=True, **cloud.options())
    assert backend.url == f"{cloud.scheme}://{BUCKET}/deep/pre fix"
    backend.put("k", b"v")
    reopened = open_backend(backend.url, **cloud.options())
    assert reopened.get("k") == b"v"
    whole_bucket = open_backend(f"{cloud.scheme}://{BUCKET}", **cloud.options())
    assert whole_bucket.get("deep/pre fix/k") == b"v"  # the prefix is a real key prefix


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", ConfigError),
        ("ftp://host/x", ConfigError),
        ("s3:///prefix-without-bucket", ConfigError),
        ("s3://bucket/x?versionId=1", ConfigError),
        ("s3://bucket/../escape", InvalidInputError),
        ("gs://bucket/a/./b", InvalidInputError),
    ],
)
def test_bad_urls_are_refused(url: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        open_backend(url, anonymous=True)


def test_unknown_options_are_refused(cloud: CloudTarget) -> None:
    with pytest.raises(ConfigError, match="unknown storage option"):
        open_backend(f"{cloud.scheme}://{BUCKET}/x", no_such_option=1, **cloud.options())


def test_a_missing_extra_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "weightvault.storage.s3", None)  # as if boto3 were absent
    with pytest.raises(ConfigError, match=r"pip install 'weightvault\[s3\]'"):
        open_backend("s3://bucket/x")


def test_factory_import_and_local_use_load_no_cloud_library() -> None:
    code = (
        "import sys, tempfile\n"
        "from weightvault.storage.factory import open_backend\n"
        "open_backend(tempfile.mkdtemp()).put('k', b'v')\n"
        "open_backend('memory://x').put('k', b'v')\n"
        "clouds = ('boto3', 'botocore', 'azure', 'google')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in clouds)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


SEED_CONFIG = """
aws:
  enabled: true
  region: "us-west-2"
  model_weights:
    s3_bucket: "seed-models"
gcp:
  enabled: true
  project_id: "my-llm-project"
  region: "us-central1"
  model_weights:
    gcs_bucket: "seed-models"
azure:
  enabled: true
  model_weights:
    container: "seed-models"
"""


def test_seed_config_sections_open_working_backends(
    moto: servers.ServerProcess, gcs_emulator: servers.ServerProcess, azurite: servers.ServerProcess
) -> None:
    config: dict[str, Any] = yaml.safe_load(SEED_CONFIG)
    # What a deployment adds for its own endpoints and secrets.
    config["aws"].update(endpoint_url=moto.endpoint, access_key_id="test", secret_access_key="test")
    config["gcp"]["endpoint_url"] = gcs_emulator.endpoint
    config["azure"]["connection_string"] = servers.azurite_connection_string(azurite.endpoint)
    expected = {"aws": "s3://seed-models", "gcp": "gs://seed-models", "azure": "az://seed-models"}
    for section, url in expected.items():
        backend = backend_from_seed_config(section, config[section], create=True, retry_attempts=2)
        assert backend.url == url
        backend.put(f"from-{section}", section.encode())
        assert backend.get(f"from-{section}") == section.encode()
        backend.close()


def test_seed_config_errors_name_the_missing_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"aws\.model_weights\.s3_bucket is required"):
        backend_from_seed_config("aws", {"region": "us-west-2", "model_weights": {}})
    with pytest.raises(ConfigError, match="unknown storage section"):
        backend_from_seed_config("oracle", {})
    local = backend_from_seed_config("local", {"path": str(tmp_path / "store")})
    assert isinstance(local, LocalBackend)


def test_endpoints_and_credentials_from_each_clouds_usual_environment(
    monkeypatch: pytest.MonkeyPatch,
    moto: servers.ServerProcess,
    gcs_emulator: servers.ServerProcess,
    azurite: servers.ServerProcess,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.endpoint)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", servers.azurite_connection_string(azurite.endpoint))
    for scheme in ("s3", "gs", "az"):
        backend = open_backend(f"{scheme}://{BUCKET}/{uuid.uuid4().hex}", create=True)
        backend.put("k", scheme.encode())
        assert backend.get("k") == scheme.encode()
        backend.close()
