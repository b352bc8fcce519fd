"""Prometheus metrics of the aggregator, on the default registry that /metrics exposes."""

from prometheus_client import Counter, Gauge, Histogram

SOURCE_FETCHES = Counter(
    "qscrypt_aggregator_source_fetches_total",
    "Source fetches by outcome.",
    ["source", "result"],
)
FETCH_SECONDS = Histogram(
    "qscrypt_aggregator_fetch_seconds",
    "Time to fetch and parse one source, retries included.",
    ["source"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
DATA_AGE_SECONDS = Gauge(
    "qscrypt_aggregator_data_age_seconds",
    "Age of the newest data held from each source (seconds since its last successful fetch).",
    ["source"],
)
OUTLIERS = Counter(
    "qscrypt_aggregator_outliers_total",
    "Values rejected as outliers, by source and quantity.",
    ["source", "quantity"],
)
RUNS = Counter("qscrypt_aggregator_runs_total", "Aggregator runs by outcome.", ["result"])
RUN_SECONDS = Histogram(
    "qscrypt_aggregator_run_seconds",
    "Duration of one full run: fetch, reconcile, write.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0),
)
