"""Health, readiness, metrics, the rate limit and problem details for what the router refuses."""

from prometheus_client.parser import text_string_to_metric_families

from api.config import ApiConfig
from api.ratelimit import RateLimiter, retry_after_header
from tests.api.conftest import ClientFactory
from tests.api.test_read_endpoints import assert_problem


async def test_health_and_readiness(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    body = await ready.json()
    assert (ready.status, body["status"], body["database"]) == (200, "ready", "ok")
    assert body["data"]["scrypt"]["stale"] is False
    assert body["data"]["scrypt"]["data_age_s"] < 600


async def test_metrics_count_requests_by_route(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    for _ in range(3):
        assert (await client.get("/v1/decisions/default")).status == 200
    assert (await client.get("/v1/nowhere")).status == 404
    response = await client.get("/metrics")
    assert response.content_type == "text/plain"
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(await response.text())
        for s in family.samples
    }
    route = ("route", "/v1/decisions/{profile}")
    assert samples[("qscrypt_api_requests_total", (("method", "GET"), route, ("status", "200")))] == 3
    assert samples[("qscrypt_api_request_seconds_count", (route,))] == 3
    assert (
        samples[
            ("qscrypt_api_requests_total", (("method", "GET"), ("route", "unmatched"), ("status", "404")))
        ]
        == 1
    )
    assert samples[("qscrypt_api_evaluations_total", (("result", "ok"),))] >= 1
    assert 0 <= samples[("qscrypt_api_data_age_seconds", (("algorithm", "scrypt"),))] < 600


async def test_the_rate_limit_answers_429_with_retry_after(
    market_dsn: str, make_client: ClientFactory
) -> None:
    client = await make_client(market_dsn, config=ApiConfig(rate_limit_per_s=0.5, rate_limit_burst=3))
    statuses = [(await client.get("/healthz")).status for _ in range(3)]
    refused = await client.get("/v1/decisions/default")
    assert statuses == [200, 200, 200]
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"  # one token back at 0.5 a second
    assert refused.content_type == "application/problem+json"
    assert_problem(await refused.json(), 429)
    metrics = await client.get("/metrics")  # also limited: every endpoint is
    assert metrics.status == 429


def test_token_buckets_refill_at_the_rate_and_forget_idle_clients() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0.0, 0.0]
    assert limiter.take("a") == 0.5  # empty: half a second to the next token at 2 a second
    assert limiter.take("b") == 0.0  # every client has its own bucket
    now[0] = 0.25
    assert limiter.take("a") == 0.25  # half a token back
    now[0] = 0.5
    assert limiter.take("a") == 0.0
    now[0] = 100.0
    limiter.take("c")
    assert set(limiter._buckets) == {"c"}  # a and b had refilled: forgotten
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.5) == "3"


async def test_what_the_router_refuses_is_a_problem_too(market_dsn: str, make_client: ClientFactory) -> None:
    client = await make_client(market_dsn)
    missing = await client.get("/v2/decisions")
    assert missing.content_type == "application/problem+json"
    assert_problem(await missing.json(), 404)
    wrong = await client.patch("/v1/profiles/default")
    assert wrong.status == 405
    assert wrong.headers["Allow"]
    assert_problem(await wrong.json(), 405)
