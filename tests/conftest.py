"""Shared pytest setup: real services (PostgreSQL, Litecoin Core) as fixtures."""

pytest_plugins = ["tests.services.postgres", "tests.services.litecoin", "tests.services.kafka",
                  "tests.services.peers", "tests.services.dogecoin"]
