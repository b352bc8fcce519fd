"""Prometheus metrics of the proxy. Label sets are bounded: reasons and upstreams are few, and
per-worker figures are exported only for the top workers by hashrate. In a multi-process proxy
(proxy.supervisor) the supervisor serves every worker's figures: counters and histograms summed,
gauges summed or, with `liveall`, one series per worker process (a `pid` label); the top workers
are ranked by the supervisor over all processes' figures, which the workers send it."""

import json
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app

TOP_WORKERS = 20
MAX_LABEL = 128
"""Longest label value exported: a worker name is at most 128 characters (mining.stratum)."""
WorkerFigure = tuple[str, float, float]
"""(worker name, estimated hashrate in H/s, current difficulty)."""


def top_workers(figures: Iterable[WorkerFigure], count: int = TOP_WORKERS) -> list[WorkerFigure]:
    """The `count` workers with the most hashrate. A name seen more than once (rigs in two worker
    processes mining under one name) counts once: hashrates summed, the highest difficulty."""
    merged: dict[str, list[float]] = {}
    for worker, hashrate, difficulty in figures:
        entry = merged.setdefault(worker, [0.0, 0.0])
        entry[0] += hashrate
        entry[1] = max(entry[1], difficulty)
    ranked = sorted(merged.items(), key=lambda item: item[1][0], reverse=True)[:count]
    return [(worker, hashrate, difficulty) for worker, (hashrate, difficulty) in ranked]


def safe_label(value: str, limit: int = MAX_LABEL) -> str:
    """`value` as a label the exposition can always carry. Names come off the wire and the codec
    refuses the bad ones, but a label that cannot be encoded (a lone surrogate) makes every scrape
    an HTTP 500 and a NUL corrupts the text format, so the exporter does not trust the codec:
    anything not printable is written as a \\uXXXX escape, and the length is capped."""
    if len(value) <= limit and value.isprintable():
        return value
    cleaned = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in value[:limit])
    return cleaned[:limit]


class TopWorkerGauges:
    """The only per-worker series: hashrate and difficulty of the top workers, replaced whole at
    each report so a worker that leaves the top leaves the output. In a multi-process proxy only
    the supervisor sets them (a worker process's gauge could not forget a label)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hashrate = Gauge("qscrypt_worker_hashrate_hs", "Estimated hashrate (top workers)",
                              ["worker"], registry=registry)
        self.difficulty = Gauge("qscrypt_worker_difficulty", "Current difficulty (top workers)",
                                ["worker"], registry=registry)

    def show(self, top: list[WorkerFigure]) -> None:
        self.hashrate.clear()
        self.difficulty.clear()
        for worker, hashrate, difficulty in top:
            label = safe_label(worker)
            self.hashrate.labels(label).set(hashrate)
            self.difficulty.labels(label).set(difficulty)


class ProxyMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.miners = Gauge("qscrypt_miners_connected", "Miner connections held", registry=r,
                            multiprocess_mode="livesum")
        self.shares = Counter("qscrypt_shares_total", "Shares by result and reason",
                              ["result", "reason"], registry=r)
        self.protocol_errors = Counter("qscrypt_protocol_errors_total", "Malformed lines from miners",
                                       registry=r)
        self.disconnects = Counter("qscrypt_disconnects_total", "Miner connections closed by reason",
                                   ["reason"], registry=r)
        self.bans = Counter("qscrypt_ip_bans_total", "IPs banned for invalid shares", registry=r)
        self.top_workers = TopWorkerGauges(r)
        self.total_hashrate = Gauge("qscrypt_hashrate_hs", "Estimated hashrate of all miners", registry=r,
                                    multiprocess_mode="livesum")
        self.upstream_up = Gauge("qscrypt_upstream_up", "1 when the upstream is ready", ["upstream"],
                                 registry=r, multiprocess_mode="liveall")
        self.aux_chain_up = Gauge("qscrypt_aux_chain_up",
                                  "1 when a merge-mined chain's node answered its last poll (0: its blocks "
                                  "are not being earned)", ["upstream", "coin"], registry=r,
                                  multiprocess_mode="liveall")
        self.upstream_active = Gauge("qscrypt_upstream_active", "1 for the upstream miners mine on",
                                     ["upstream"], registry=r, multiprocess_mode="liveall")
        self.upstream_submits = Counter("qscrypt_upstream_submits_total", "Shares submitted upstream",
                                        ["upstream", "result"], registry=r)
        self.upstream_latency = Histogram("qscrypt_upstream_submit_seconds", "Upstream submit latency",
                                          ["upstream"], registry=r,
                                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.fan_out = Histogram("qscrypt_fanout_seconds", "Time to write one job to every miner on it",
                                 registry=r, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
        self.failovers = Counter("qscrypt_failovers_total", "Moves of miners off a failed upstream",
                                 registry=r)
        self.failbacks = Counter("qscrypt_failbacks_total",
                                 "Moves of miners back to the preferred upstream once it recovered",
                                 registry=r)
        self.switches = Counter("qscrypt_switches_total", "Profit switches of a profile's miners",
                                ["profile"], registry=r)
        self.blocks = Counter("qscrypt_blocks_total", "Blocks found and submitted, by coin and the"
                              " daemon's verdict (accepted, rejected, orphaned, pending)", ["coin", "status"],
                              registry=r)
        self.share_buffer = Gauge("qscrypt_share_buffer_rows", "Share rows waiting for PostgreSQL",
                                  registry=r, multiprocess_mode="livesum")
        self.refused = Counter("qscrypt_requests_refused_total",
                               "Miner messages refused at the codec, by reason (malformed, oversize, "
                               "bad-params, bad-text)", ["reason"], registry=r)
        self.share_rows_on_disk = Gauge("qscrypt_share_rows_spilled", "Share rows waiting on disk only "
                                        "(past the memory bound while PostgreSQL is away)", registry=r,
                                        multiprocess_mode="livesum")
        self.share_writer_up = Gauge("qscrypt_share_writer_up", "1 while the share writer runs and its "
                                     "last write worked", registry=r, multiprocess_mode="livemin")
        self.share_writer_restarts = Counter("qscrypt_share_writer_restarts_total",
                                             "Share writer restarts by its supervisor", registry=r)
        self.share_write_failures = Counter("qscrypt_share_write_failures_total",
                                            "Failed share writes: transient (retried) or row (quarantined)",
                                            ["kind"], registry=r)
        self.shares_quarantined = Counter("qscrypt_shares_quarantined_total",
                                          "Rows PostgreSQL refused for good, kept in the quarantine file",
                                          registry=r)
        self.records_journaled = Gauge("qscrypt_journal_records_waiting", "Journaled records (blocks) "
                                       "not yet in PostgreSQL", registry=r, multiprocess_mode="livesum")


Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def serve_metrics(port: int, registry: CollectorRegistry, readiness: Readiness,
                  host: str = "0.0.0.0") -> WSGIServer:
    """/metrics (and any other path, as prometheus_client's own server does) plus /readyz and
    /healthz: 200 or 503 with the readiness details as JSON. In a thread of its own."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in ("/readyz", "/healthz"):
            ready, details = readiness()
            status = "200 OK" if ready else "503 Service Unavailable"
            body = json.dumps({"ready": ready, **details}).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    server = make_server(host, port, app, _Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
