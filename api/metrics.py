"""Prometheus metrics of the API, on a registry of the app's own (several apps may share a
process in tests). Labels are bounded: routes are the router's templates, profiles are few."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "qscrypt_api_requests_total",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "qscrypt_api_request_seconds",
            "Time to answer a request",
            ["route"],
            registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.rate_limited = Counter(
            "qscrypt_api_rate_limited_total", "Requests refused by the rate limit", registry=r
        )
        self.evaluations = Counter(
            "qscrypt_api_evaluations_total", "Decision passes over every profile", ["result"], registry=r
        )
        self.switches = Counter(
            "qscrypt_api_decision_changes_total", "Persisted decision changes", ["profile"], registry=r
        )
        self.data_age = Gauge(
            "qscrypt_api_data_age_seconds",
            "Age of the latest profitability run each decision relies on",
            ["algorithm"],
            registry=r,
        )
