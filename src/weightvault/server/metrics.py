"""Prometheus metrics of one server process (``/metrics``).

Requests by route template and status, bytes in and out, push (commit) and pull (file download)
durations, and what the vault stores (read from the index at scrape time, so every process
behind a load balancer reports the shared totals).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_DURATIONS = (0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class _StoreCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            stats = self._stats()
        except Exception:  # a scrape must not fail because the database is briefly away
            return
        family = GaugeMetricFamily(
            "weightvault_objects_stored", "What the vault stores, by kind", labels=["kind"]
        )
        for kind in ("models", "versions", "packs", "chunks"):
            family.add_metric([kind], float(stats.get(kind, 0)))
        yield family
        yield GaugeMetricFamily(
            "weightvault_stored_bytes", "Bytes in pack objects", value=float(stats.get("pack_bytes", 0))
        )


class Metrics:
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "weightvault_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "weightvault_http_request_seconds",
            "Time to the response's headers",
            ["method", "route"],
            registry=self.registry,
        )
        self.bytes_in = Counter("weightvault_bytes_in", "Request body bytes received", registry=self.registry)
        self.upload_bytes = Counter(
            "weightvault_upload_file_bytes",
            "File bytes received by whole-file upload sessions (encrypted and float-compressed pushes)",
            registry=self.registry,
        )
        self.bytes_out = Counter("weightvault_bytes_out", "File bytes sent", registry=self.registry)
        self.push_seconds = Histogram(
            "weightvault_push_seconds",
            "Duration of version commits",
            buckets=_DURATIONS,
            registry=self.registry,
        )
        self.pull_seconds = Histogram(
            "weightvault_pull_seconds",
            "Duration of file downloads",
            buckets=_DURATIONS,
            registry=self.registry,
        )
        self.registry.register(_StoreCollector(stats))
