"""Credentials come from each cloud's usual places; their absence is a CredentialsError naming the cloud."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
import servers
from targets import BUCKET, FAST_RETRY

from weightvault.core.errors import CredentialsError
from weightvault.storage.factory import open_backend

AWS_VARS = [
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
]  # fmt: skip
AZURE_VARS = [
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
]


@pytest.fixture
def no_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def test_s3_without_credentials(no_aws_credentials: Path, moto: servers.ServerProcess) -> None:
    with pytest.raises(CredentialsError) as info:
        open_backend(f"s3://{BUCKET}/x", endpoint_url=moto.endpoint)
    assert str(info.value).startswith("s3: no AWS credentials found")


def test_s3_reads_a_named_profile_from_the_shared_credentials_file(
    no_aws_credentials: Path, moto: servers.ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    (no_aws_credentials / "aws-credentials").write_text(
        "[vault]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = secret\n"
    )
    monkeypatch.setenv("AWS_PROFILE", "vault")
    backend = open_backend(f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=moto.endpoint, create=True)
    backend.put("k", b"v")
    assert backend.get("k") == b"v"
    with pytest.raises(CredentialsError, match=r"^s3: "):
        open_backend(f"s3://{BUCKET}/x", endpoint_url=moto.endpoint, profile="no-such-profile")


def test_gcs_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no application-default login
    with pytest.raises(CredentialsError) as info:
        open_backend(f"gs://{BUCKET}/x")
    assert str(info.value).startswith("gcs: no Google credentials found")
    with pytest.raises(CredentialsError, match=r"^gcs: "):
        open_backend(f"gs://{BUCKET}/x", credentials_file=str(tmp_path / "missing.json"))


def test_azure_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in AZURE_VARS:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(CredentialsError) as info:
        open_backend(f"az://{BUCKET}/x")
    assert str(info.value).startswith("azure: no credentials found")
    with pytest.raises(CredentialsError, match=r"^azure: no credentials for https://acct.blob"):
        open_backend(f"az://{BUCKET}/x", account_url="https://acct.blob.core.windows.net")


def test_azure_account_key_from_the_environment_and_a_wrong_key_refused(
    monkeypatch: pytest.MonkeyPatch, azurite: servers.ServerProcess
) -> None:
    for name in AZURE_VARS:
        monkeypatch.delenv(name, raising=False)
    account_url = f"{azurite.endpoint}/{servers.AZURITE_ACCOUNT}"
    monkeypatch.setenv("AZURE_STORAGE_KEY", servers.AZURITE_KEY)
    backend = open_backend(f"az://{BUCKET}/{uuid.uuid4().hex}", account_url=account_url, create=True)
    backend.put("k", b"v")
    assert backend.get("k") == b"v"
    wrong = base64.b64encode(b"not the key" * 6).decode()
    impostor = open_backend(backend.url, account_url=account_url, account_key=wrong, **FAST_RETRY)
    with pytest.raises(CredentialsError, match=r"^azure: get k: access refused"):
        impostor.get("k")
