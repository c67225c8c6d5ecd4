"""Prometheus metrics shared by every service (each service adds its own beside these).

docs/metrics.md lists every exported metric; the scrape test fails on one that is missing there or here.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# The `_created` series of counters and histograms double the series count and nothing reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

RECORDS_CONSUMED = Counter("sb_records_consumed_total", "Records read from Kafka", ["service", "topic"])
RECORDS_DEAD_LETTERED = Counter(
    "sb_records_dead_lettered_total", "Records and requests sent to the DLQ", ["service", "error_type"]
)
DLQ_DROPPED = Counter(
    "sb_dlq_dropped_total",
    "Refusals not written to the DLQ: their sender was over its DLQ budget",
    ["service", "reason"],
)
RECORDS_PRODUCED = Counter("sb_records_produced_total", "Records acknowledged by Kafka", ["service", "topic"])
PRODUCE_FAILURES = Counter(
    "sb_produce_failures_total", "Sends the broker did not acknowledge in time", ["service", "topic"]
)
PRODUCE_LATENCY = Histogram(
    "sb_produce_latency_seconds",
    "Send to broker acknowledgement (acks=all)",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SECONDS = Histogram(
    "sb_batch_seconds",
    "Time to handle one consumed batch of one partition",
    ["service"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TRANSIENT_RETRIES = Counter("sb_transient_retries_total", "Batches retried after a transient error", ["service"])
READY = Gauge("sb_ready", "1 while the service's /readyz answers 200", ["service"])
BUILD_INFO = Gauge(
    "sb_build_info", "Always 1: the running build's version and revision", ["service", "version", "revision", "python"]
)

# The image build sets it (the commit the image was built from); it is a fact of the build, not a setting.
REVISION_ENV = "SB_BUILD_REVISION"
UNKNOWN = "unknown"


def _version() -> str:
    try:
        return importlib.metadata.version("switchboard")
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


def export_service(service: str, ready: Callable[[], bool]) -> None:
    """Export `sb_build_info` and `sb_ready` for `service`; `ready` is called at each scrape (what /readyz answers)."""
    revision = os.environ.get(REVISION_ENV, "").strip() or UNKNOWN
    BUILD_INFO.labels(service, _version(), revision, platform.python_version()).set(1)
    READY.labels(service).set_function(lambda: 1.0 if ready() else 0.0)


@dataclass
class PartitionLag:
    """Where one consumer stands on one partition it owns."""

    records: int  # between its position and the partition's high watermark
    # Timestamp (ms) of the oldest record not yet handled: exact when a poll returned it, else an upper bound on its
    # age (the newest record handled, or when the partition was last caught up); None when caught up.
    oldest_at_ms: int | None


class LagSource(Protocol):
    """What a consumer shows the lag collector: its group and its partitions' lag, keyed by (topic, partition)."""

    @property
    def group_id(self) -> str: ...

    @property
    def lag(self) -> Mapping[tuple[str, int], PartitionLag]: ...


class _ConsumerLagCollector(Collector):
    """`sb_consumer_lag` and `sb_consumer_lag_seconds` of every running consumer of this process.

    Read at scrape time, so the age of a batch stuck in retries keeps growing between polls. A partition this
    process no longer owns has no series (its new owner reports it).
    """

    LABELS = ("consumer_group", "topic", "partition")

    def __init__(self) -> None:
        self._sources: weakref.WeakSet[LagSource] = weakref.WeakSet()
        self._lock = threading.Lock()

    def track(self, source: LagSource) -> None:
        with self._lock:
            self._sources.add(source)

    def untrack(self, source: LagSource) -> None:
        with self._lock:
            self._sources.discard(source)

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "sb_consumer_lag",
                "Records between the consumer group's position and the partition's high watermark",
                labels=self.LABELS,
            ),
            GaugeMetricFamily(
                "sb_consumer_lag_seconds",
                "Age of the oldest record of the partition not yet handled (0 when caught up)",
                labels=self.LABELS,
            ),
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now_ms = time.time() * 1000
        merged: dict[tuple[str, str, str], tuple[int, float]] = {}
        with self._lock:
            sources = list(self._sources)
        for source in sources:
            for (topic, partition), lag in list(source.lag.items()):
                age = 0.0 if lag.oldest_at_ms is None else max(0.0, (now_ms - lag.oldest_at_ms) / 1000)
                key = (source.group_id, topic, str(partition))
                # Two consumers of one group in one process own a partition together only during a rebalance.
                old = merged.get(key, (0, 0.0))
                merged[key] = (max(old[0], lag.records), max(old[1], age))
        records, seconds = self._families()
        for key, (count, age) in sorted(merged.items()):
            records.add_metric(key, count)
            seconds.add_metric(key, round(age, 3))
        return (records, seconds)


CONSUMER_LAG = _ConsumerLagCollector()
REGISTRY.register(CONSUMER_LAG)
