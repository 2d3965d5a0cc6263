"""Real protocol servers for the storage tests, one each per session, on free 127.0.0.1 ports.

moto (S3), Azurite (Azure Blob) and gcp-storage-emulator (GCS) run as child processes started
here and killed at the end of the session. Every cloud backend a test opens points at one of
them, in a fresh prefix, so tests never see each other's objects and never leave the machine.
"""

from __future__ import annotations

import os

# Set before any cloud library is imported (google-auth reads these at import time): a
# credential chain that falls through to "ask the instance metadata service" must fail on
# loopback at once instead of sending anything towards 169.254.169.254.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["NO_GCE_CHECK"] = "true"
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"
os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
for _name in (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "STORAGE_EMULATOR_HOST",
    "AZURE_STORAGE_CONNECTION_STRING",
):
    os.environ.pop(_name, None)

import sys  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

import servers  # noqa: E402
from targets import PROVIDERS, CloudTarget, Factory, azure_options, cloud_factory, gcs_options, s3_options  # noqa: E402

from weightvault.storage.backend import Backend  # noqa: E402
from weightvault.storage.factory import open_backend  # noqa: E402


def _serve(launch: Any) -> Iterator[servers.ServerProcess]:
    server = launch().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def moto() -> Iterator[servers.ServerProcess]:
    yield from _serve(servers.moto_server)


@pytest.fixture(scope="session")
def azurite() -> Iterator[servers.ServerProcess]:
    yield from _serve(servers.azurite_server)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[servers.ServerProcess]:
    yield from _serve(servers.gcs_server)


@pytest.fixture
def s3_factory(moto: servers.ServerProcess) -> Iterator[Factory]:
    yield from cloud_factory("s3", s3_options(moto.endpoint))


@pytest.fixture
def gcs_factory(gcs_emulator: servers.ServerProcess) -> Iterator[Factory]:
    yield from cloud_factory("gs", gcs_options(gcs_emulator.endpoint))


@pytest.fixture
def azure_factory(azurite: servers.ServerProcess) -> Iterator[Factory]:
    yield from cloud_factory("az", azure_options(azurite.endpoint))


@pytest.fixture
def local_factory(tmp_path: Path) -> Factory:
    def make(prefix: str | None = None, **_: Any) -> Backend:
        return open_backend((tmp_path / (prefix or uuid.uuid4().hex[:12])).as_uri())

    return make


@pytest.fixture
def memory_factory() -> Factory:
    def make(prefix: str | None = None, **_: Any) -> Backend:
        return open_backend(f"memory://{prefix or uuid.uuid4().hex}")

    return make


@pytest.fixture(params=sorted(PROVIDERS))
def cloud(request: pytest.FixtureRequest) -> Iterator[CloudTarget]:
    """Each cloud provider in turn, against its session emulator."""
    target = CloudTarget(request.param, request.getfixturevalue(PROVIDERS[request.param][1]))
    yield target
    target.close()
