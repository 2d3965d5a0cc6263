"""A KEK held by AWS KMS: data keys are wrapped with KMS Encrypt and unwrapped with Decrypt.

The KEK never leaves KMS; access is whatever IAM grants on the key, and KMS key rotation
is transparent (KMS keeps old key material for Decrypt). ``boto3`` is imported only here.

Config: ``{"type": "aws_kms", "key_id": "<key id, ARN or alias/...>", "region": "eu-west-1",
"endpoint_url": "...", "profile": "..."}`` (all but ``key_id`` optional; credentials come
from boto3's usual chain).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from weightvault.keys.provider import (
    KeyNotFoundError,
    KeyProviderConfigError,
    KeyProviderError,
    KeyProviderUnavailableError,
    WrongKeyError,
    config_str,
)

NAME = "aws_kms"
#: Bound into every wrap as KMS encryption context (authenticated, logged by CloudTrail).
ENCRYPTION_CONTEXT: Final = {"weightvault": "data-key"}

_NOT_FOUND = {"NotFoundException"}
_WRONG_KEY = {"InvalidCiphertextException", "IncorrectKeyException"}
_UNAVAILABLE = {
    "KMSInternalException",
    "ThrottlingException",
    "DependencyTimeoutException",
    "LimitExceededException",
}


class AwsKmsKeyProvider:
    name = NAME

    def __init__(
        self,
        key_id: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        profile: str | None = None,
        client: Any = None,
    ) -> None:
        self._key_id = key_id
        self._region = region
        self._endpoint_url = endpoint_url
        self._profile = profile
        if client is None:
            try:
                import boto3
                from botocore.config import Config
                from botocore.exceptions import BotoCoreError
            except ImportError:
                raise KeyProviderConfigError(NAME, "needs boto3 (pip install boto3)") from None
            try:
                session = boto3.session.Session(profile_name=profile, region_name=region)
                client = session.client(
                    "kms",
                    endpoint_url=endpoint_url,
                    config=Config(connect_timeout=10, read_timeout=30, retries={"mode": "standard"}),
                )
            except BotoCoreError as e:  # unknown profile, no region
                raise KeyProviderConfigError(NAME, f"cannot set up the KMS client: {e}") from None
        self._client = client  # boto3 clients are thread-safe

    @property
    def key_id(self) -> str:
        return self._key_id

    def wrap(self, data_key: bytes) -> bytes:
        resp = self._call(
            "encrypt", KeyId=self._key_id, Plaintext=bytes(data_key), EncryptionContext=ENCRYPTION_CONTEXT
        )
        return bytes(resp["CiphertextBlob"])

    def unwrap(self, wrapped: bytes) -> bytes:
        resp = self._call(
            "decrypt", CiphertextBlob=bytes(wrapped), KeyId=self._key_id, EncryptionContext=ENCRYPTION_CONTEXT
        )
        return bytes(resp["Plaintext"])

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": NAME, "key_id": self._key_id}
        for k, v in (
            ("region", self._region),
            ("endpoint_url", self._endpoint_url),
            ("profile", self._profile),
        ):
            if v is not None:
                out[k] = v
        return out

    def _call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            NoCredentialsError,
            PartialCredentialsError,
        )

        try:
            result: dict[str, Any] = getattr(self._client, op)(**kwargs)
            return result
        except ClientError as e:
            err = e.response.get("Error", {})
            code = err.get("Code", "")
            msg = f"KMS {op} with key {self._key_id} failed: {code}: {err.get('Message', '')}"
            if code in _NOT_FOUND:
                raise KeyNotFoundError(NAME, msg) from None
            if code in _WRONG_KEY:
                raise WrongKeyError(NAME, msg) from None
            if code in _UNAVAILABLE:
                raise KeyProviderUnavailableError(NAME, msg) from None
            raise KeyProviderError(NAME, msg) from None
        except (NoCredentialsError, PartialCredentialsError) as e:
            raise KeyProviderError(NAME, f"no usable AWS credentials: {e}") from None
        except BotoCoreError as e:  # connection errors, timeouts, bad endpoint
            raise KeyProviderUnavailableError(NAME, f"KMS {op} failed: {e}") from None


def open_provider(config: Mapping[str, Any]) -> AwsKmsKeyProvider:
    def opt(key: str) -> str | None:
        return config_str(NAME, config, key) if config.get(key) is not None else None

    return AwsKmsKeyProvider(
        config_str(NAME, config, "key_id"),
        region=opt("region"),
        endpoint_url=opt("endpoint_url"),
        profile=opt("profile"),
    )
