"""The shared backend contract, run against every backend (clouds against real emulators)."""

from __future__ import annotations

import pytest
from contract import BackendContract
from targets import Factory


class TestLocalBackend(BackendContract):
    @pytest.fixture
    def factory(self, local_factory: Factory) -> Factory:
        return local_factory


class TestMemoryBackend(BackendContract):
    streams_put_file = False  # holding objects in memory is the point of this backend

    @pytest.fixture
    def factory(self, memory_factory: Factory) -> Factory:
        return memory_factory


class TestS3Backend(BackendContract):
    @pytest.fixture
    def factory(self, s3_factory: Factory) -> Factory:
        return s3_factory


class TestGCSBackend(BackendContract):
    @pytest.fixture
    def factory(self, gcs_factory: Factory) -> Factory:
        return gcs_factory


class TestAzureBackend(BackendContract):
    @pytest.fixture
    def factory(self, azure_factory: Factory) -> Factory:
        return azure_factory
