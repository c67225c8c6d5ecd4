"""Prometheus metrics shared by every service (each service adds its own beside these)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECORDS_CONSUMED = Counter("sb_records_consumed_total", "Records read from Kafka", ["service", "topic"])
RECORDS_DEAD_LETTERED = Counter(
    "sb_records_dead_lettered_total", "Records and requests sent to the DLQ", ["service", "error_type"]
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
READY = Gauge("sb_ready", "1 when the service is ready to take work", ["service"])
