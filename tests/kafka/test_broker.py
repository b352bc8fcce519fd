"""What only the real broker can show: workers as processes killed with SIGKILL, the broker itself
stopping mid-run, and who may connect (TLS with a test CA, mTLS identities, SASL/SCRAM)."""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import replace

import pytest

from backends.worker import resolve_worker_id
from qscrypt.bus import BusConfig, BusUnavailable, create_bus
from qscrypt.bus.messages import Status
from qscrypt.devnet.kafka import CertificateAuthority, KafkaBroker
from qscrypt.settings import ConfigError
from tests.kafka.conftest import StackFactory
from tests.kafka.harness import assert_exact_cover, bus_config, wait_for
from tests.services.kafka import KAFKA_SCRAM_USER


async def test_sigkilled_worker_loses_no_range(kafka_stack: StackFactory) -> None:
    s = await kafka_stack(task_partitions=6)
    coordinator = await s.add_coordinator()
    victims = [s.spawn_worker(f"proc-{i}") for i in range(3)]
    await wait_for(lambda: {d.worker for d in s.dones()} >= {"proc-0", "proc-1", "proc-2"}, 45,
                   "results from all three worker processes")
    victim = victims[0]
    os.kill(victim.process.pid, signal.SIGKILL)  # mid-task: it hashes without pause
    killed_at = len(s.dones())
    s.spawn_worker("proc-3")  # joins while the dead member's partitions are still assigned to it
    # Its partitions move only after the session timeout (3 s here), then their tasks are redelivered.
    await wait_for(lambda: any(d.worker == "proc-3" for d in s.dones()), 45, "the new worker's first result")
    await wait_for(lambda: len(s.dones()) >= killed_at + 30, 45, "work after the kill")
    await s.drain(timeout=60)
    await asyncio.sleep(0.5)

    assert coordinator.current is not None
    epoch = coordinator.current.epoch
    issued = s.issued(coordinator, epoch)
    assert_exact_cover(issued, s.dones(coordinator, epoch))
    assert coordinator.book.stats.completed == len(issued)
    by_victim = {d.task for d in s.dones() if d.worker == victim.name}
    assert by_victim, "the killed worker had completed tasks before it died"
    assert victim.process.wait() == -signal.SIGKILL
    assert len({(sub.extranonce2, sub.nonce) for sub in s.pool.submissions}) == len(s.pool.submissions)
    assert all(sub.accepted for sub in s.pool.submissions)


async def test_broker_restart_mid_run(kafka_stack: StackFactory, kafka_broker: KafkaBroker) -> None:
    s = await kafka_stack()
    coordinator = await s.add_coordinator()
    await s.add_worker("w-a")
    await s.add_worker("w-b")
    await wait_for(lambda: len(s.dones()) >= 10, 30, "results before the restart")
    accepted_before = sum(sub.accepted for sub in s.pool.submissions)
    try:
        assert await asyncio.to_thread(kafka_broker.stop) in (0, 143, -signal.SIGTERM)
        await asyncio.sleep(1.0)
    finally:
        await asyncio.to_thread(kafka_broker.start)
    done_at_restart = len(s.dones())
    # Producers, consumers and the group all reconnect on their own, with backoff.
    await wait_for(lambda: len(s.dones()) >= done_at_restart + 20, 60, "results after the restart")
    await wait_for(lambda: sum(sub.accepted for sub in s.pool.submissions) > accepted_before, 30,
                   "accepted shares after the restart")
    await s.drain(timeout=60)
    await asyncio.sleep(0.5)
    assert coordinator.current is not None
    epoch = coordinator.current.epoch
    assert_exact_cover(s.issued(coordinator, epoch), s.dones(coordinator, epoch))


def _tls(broker: KafkaBroker, **changes: object) -> BusConfig:
    base = bus_config("kafka", broker, bootstrap=broker.ssl_bootstrap, security_protocol="SSL",
                      ssl_cafile=broker.ca.pem, request_timeout_ms=5000)
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_workers_over_mtls_are_named_by_their_certificate(kafka_stack: StackFactory,
                                                                 kafka_broker: KafkaBroker) -> None:
    s = await kafka_stack()
    coordinator = await s.add_coordinator()
    cert = kafka_broker.ca.client_cert("rig-17")
    # The --worker-id flag is left out: the certificate names the worker.
    s.spawn_worker("tls", "--security-protocol", "SSL", "--ca", str(kafka_broker.ca.pem),
                   "--cert", str(cert.cert), "--key", str(cert.key), bootstrap=kafka_broker.ssl_bootstrap)
    await wait_for(lambda: any(d.worker == "rig-17" and d.status is Status.DONE for d in s.dones()), 45,
                   "a task completed over mTLS")
    await wait_for(lambda: "rig-17" in coordinator.accounting.workers, 30, "shares credited to rig-17")
    assert {d.worker for d in s.dones()} == {"rig-17"}

    config = _tls(kafka_broker, ssl_certfile=cert.cert, ssl_keyfile=cert.key)
    assert resolve_worker_id(config, None) == "rig-17"
    with pytest.raises(ConfigError, match="authenticated identity"):
        resolve_worker_id(config, "someone-else")


@pytest.fixture(scope="module")
def rogue_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("rogue"), name="rogue-ca")


@pytest.mark.parametrize("case", ["foreign client certificate", "no client certificate",
                                  "broker not trusted"])
async def test_tls_refuses_the_wrong_party(kafka_broker: KafkaBroker, rogue_ca: CertificateAuthority,
                                           case: str) -> None:
    rogue = rogue_ca
    good = kafka_broker.ca.client_cert("rig-1")
    if case == "foreign client certificate":
        forged = rogue.client_cert("rig-1")  # same CN, signed by a CA the broker does not trust
        config = _tls(kafka_broker, ssl_certfile=forged.cert, ssl_keyfile=forged.key)
    elif case == "no client certificate":
        config = _tls(kafka_broker)
    else:  # the client trusts only the rogue CA, so the real broker's certificate fails verification
        config = _tls(kafka_broker, ssl_cafile=rogue.pem, ssl_certfile=good.cert, ssl_keyfile=good.key)
    bus = create_bus(config)
    with pytest.raises(BusUnavailable):
        await bus.start()
    await bus.close()

    accepted = create_bus(_tls(kafka_broker, ssl_certfile=good.cert, ssl_keyfile=good.key))
    await accepted.start()  # the same broker takes a properly signed certificate
    await accepted.close()


async def test_sasl_scram(kafka_broker: KafkaBroker) -> None:
    def config(password: str) -> BusConfig:
        return bus_config("kafka", kafka_broker, bootstrap=kafka_broker.sasl_bootstrap,
                          security_protocol="SASL_SSL", ssl_cafile=kafka_broker.ca.pem,
                          sasl_username=KAFKA_SCRAM_USER.name, sasl_password=password,
                          request_timeout_ms=5000)

    good = config(KAFKA_SCRAM_USER.password)
    assert resolve_worker_id(good, None) == KAFKA_SCRAM_USER.name
    bus = create_bus(good)
    await bus.start()
    try:
        received = bus.assign(good.control_topic, [0], from_beginning=True)
        await received.start()
        await bus.publish(good.control_topic, b"\x00ping", key=b"k")
        records = []
        for _ in range(20):
            records += await received.getmany(0.5, 10)
            if records:
                break
        await received.close()
        assert [r.value for r in records] == [b"\x00ping"]
    finally:
        await bus.close()

    wrong = create_bus(config("not-the-password"))
    with pytest.raises(BusUnavailable):
        await wrong.start()
    await wrong.close()
