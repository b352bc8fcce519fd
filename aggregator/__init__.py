"""The aggregator: market, network, pool and hardware data into PostgreSQL, profitability computed.

Sources (aggregator.sources) fetch concurrently over aiohttp and parse with pure functions;
reconciliation (aggregator.reconcile) turns their observations into one value per quantity;
aggregator.profit ranks coins and pools; aggregator.store writes a run in one transaction.
"""

from aggregator.cli import add_arguments, load_aggregator_config, main
from aggregator.config import AggregatorConfig, CoinConfig, PoolConfig, SourceConfig
from aggregator.run import RunReport, run_every, run_once

__all__ = [
    "AggregatorConfig",
    "CoinConfig",
    "PoolConfig",
    "RunReport",
    "SourceConfig",
    "add_arguments",
    "load_aggregator_config",
    "main",
    "run_every",
    "run_once",
]
