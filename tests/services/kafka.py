"""Apache Kafka fixture: one real single-node KRaft broker per test session.

- `kafka_broker` (session): a running `KafkaBroker` with three listeners: PLAINTEXT
  (`.bootstrap`), SSL requiring a client certificate from `.ca` (`.ssl_bootstrap`), and SASL_SSL with
  the SCRAM user `KAFKA_SCRAM_USER` (`.sasl_bootstrap`). Tests that stop it must start it again.

The jars come from Maven Central through tools/kafka/fetch-jars.sh (cached outside the repo); if
they cannot be fetched, or Java is missing, or the broker does not start, the fixture fails with the
reason: it never skips.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from qscrypt.devnet.kafka import KafkaBroker, KafkaError, ScramUser
from tests.services import ServiceRecord, fixture_failure

KAFKA_SCRAM_USER = ScramUser("worker-sasl", "sasl-secret-for-tests")

_record = ServiceRecord("Apache Kafka (KRaft, single node)")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"), scram_users=(KAFKA_SCRAM_USER,))
    _record.logs.append(broker.log_path)
    began = time.monotonic()
    try:
        broker.start()
    except KafkaError as exc:
        raise fixture_failure(f"Kafka broker did not start: {exc}") from None
    _record.startup_s["Kafka broker (TLS material, format, start)"] = time.monotonic() - began
    yield broker
    try:
        broker.stop()
    except KafkaError as exc:
        raise fixture_failure(f"Kafka broker did not stop cleanly: {exc}") from None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    _record.report(terminalreporter, exitstatus)
