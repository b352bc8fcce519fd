"""A single-node Apache Kafka broker (KRaft, combined broker + controller) on loopback ports.

The broker is the real one: the pinned jars from Maven Central (tools/kafka/fetch-jars.sh, cached
outside the repository) run on the machine's Java 17. Listeners:
- PLAINTEXT, for tests and the benchmark;
- SSL with client authentication required (mTLS): a client certificate's CN is the principal;
- SASL_SSL with SCRAM-SHA-256 users created at storage-format time.
The certificates come from a throwaway CA made with `keytool`; client keys are exported to PEM with
`openssl`, because Python's ssl module loads only PEM and keytool never writes a private key out.

Stopping is SIGTERM; Kafka exits 143 then, which is a clean stop. Ports and data survive `stop()`
so `start()` again is a broker restart, as in production.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from qscrypt.devnet.litecoind import free_ports

KAFKA_VERSION = "4.3.1"  # keep in step with tools/kafka/pom.xml
JARS_ENV = "QSCRYPT_KAFKA_JARS"
FETCH_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "kafka" / "fetch-jars.sh"
_STORE_PASSWORD = "qscrypt-test"  # throwaway stores of a throwaway CA
_CLEAN_EXIT = (0, 143, -signal.SIGTERM)
_LOG4J2 = """\
status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaError(RuntimeError):
    """The broker could not be found, started, or stopped."""


def jar_dir() -> Path:
    explicit = os.environ.get(JARS_ENV)
    if explicit:
        return Path(explicit)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "qscrypt" / f"kafka-{KAFKA_VERSION}"


def ensure_jars() -> Path:
    """The broker jar directory, fetched with tools/kafka/fetch-jars.sh if it is not complete yet."""
    directory = jar_dir()
    if (directory / ".complete").is_file():
        return directory
    if shutil.which("java") is None:
        raise KafkaError("java not found: the Kafka broker needs Java 17 "
                         "(apt-get install openjdk-17-jre-headless)")
    result = subprocess.run([str(FETCH_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KafkaError(f"fetching the Kafka jars failed ({FETCH_SCRIPT}): {result.stderr.strip()[-2000:]}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass(frozen=True)
class ClientCert:
    cert: Path  # PEM certificate
    key: Path  # PEM private key, unencrypted


@dataclass
class CertificateAuthority:
    """A CA made with keytool, signing broker and client certificates for one test session."""

    directory: Path
    name: str = "qscrypt-test-ca"
    store: Path = field(init=False)
    pem: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.store = self.directory / f"{self.name}.p12"
        self.pem = self.directory / f"{self.name}.pem"
        if not self.pem.exists():
            _keytool("-genkeypair", "-alias", "ca", "-keyalg", "EC", "-groupname", "secp256r1",
                     "-dname", f"CN={self.name}", "-ext", "bc:c", "-validity", "30", *self._store_args())
            _keytool("-exportcert", "-rfc", "-alias", "ca", "-file", str(self.pem), *self._store_args())

    def _store_args(self) -> list[str]:
        return ["-keystore", str(self.store), "-storetype", "PKCS12", "-storepass", _STORE_PASSWORD]

    def keystore(self, name: str, san: str | None = None) -> Path:
        """A PKCS12 keystore holding a key pair for CN=`name` and its chain up to this CA."""
        path = self.directory / f"{name}.p12"
        if path.exists():
            return path
        store = ["-keystore", str(path), "-storetype", "PKCS12", "-storepass", _STORE_PASSWORD]
        csr = self.directory / f"{name}.csr"
        signed = self.directory / f"{name}.crt"
        _keytool("-genkeypair", "-alias", "key", "-keyalg", "EC", "-groupname", "secp256r1",
                 "-dname", f"CN={name}", "-validity", "30", *store)
        _keytool("-certreq", "-alias", "key", "-file", str(csr), *store)
        extensions = ["-ext", "ku:c=digitalSignature,keyAgreement"] + (["-ext", f"san={san}"] if san else [])
        _keytool("-gencert", "-alias", "ca", "-infile", str(csr), "-outfile", str(signed), "-rfc",
                 "-validity", "30", *extensions, *self._store_args())
        _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(self.pem), *store)
        _keytool("-importcert", "-alias", "key", "-file", str(signed), *store)
        return path

    def truststore(self) -> Path:
        path = self.directory / f"{self.name}-trust.p12"
        if not path.exists():
            _keytool("-importcert", "-noprompt", "-alias", "ca", "-file", str(self.pem),
                     "-keystore", str(path), "-storetype", "PKCS12", "-storepass", _STORE_PASSWORD)
        return path

    def client_cert(self, name: str) -> ClientCert:
        """PEM certificate (with the CA in its chain) and key for a client whose CN is `name`."""
        cert = self.directory / f"{name}.cert.pem"
        key = self.directory / f"{name}.key.pem"
        if not cert.exists():
            store = self.keystore(name)
            password = f"pass:{_STORE_PASSWORD}"
            _openssl("pkcs12", "-in", str(store), "-passin", password, "-nokeys", "-out", str(cert))
            _openssl("pkcs12", "-in", str(store), "-passin", password, "-nocerts", "-nodes", "-out", str(key))
        return ClientCert(cert, key)


def _keytool(*args: str) -> None:
    _tool("keytool", *args)


def _openssl(*args: str) -> None:
    _tool("openssl", *args)


def _tool(name: str, *args: str) -> None:
    if shutil.which(name) is None:
        raise KafkaError(f"{name} not found: making the test CA needs it")
    result = subprocess.run([name, *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise KafkaError(f"{name} {args[0]} failed: {(result.stderr or result.stdout).strip()}")


@dataclass(frozen=True)
class ScramUser:
    name: str
    password: str


class KafkaBroker:
    """One KRaft node on free loopback ports, with its data, logs and TLS material under `base_dir`."""

    def __init__(self, base_dir: Path, *, scram_users: tuple[ScramUser, ...] = (),
                 heap: str = "384m", jars: Path | None = None) -> None:
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_path = base_dir / "broker.log"
        self.scram_users = scram_users
        self.heap = heap
        self._jars = jars
        self.ca = CertificateAuthority(base_dir / "tls")
        self.controller_port, self.plain_port, self.ssl_port, self.sasl_port = free_ports(4)
        self.process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.plain_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start (or restart, with the same ports and data) and wait until it answers metadata."""
        if self.running:
            return
        jars = self._jars or ensure_jars()
        classpath = f"{jars}/*"
        self.base_dir.mkdir(parents=True, exist_ok=True)
        properties = self._write_config()
        if not self._formatted:
            self._format(classpath, properties)
        log4j = self.base_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        log = self.log_path.open("ab")
        command = ["java", f"-Xmx{self.heap}", "-Xss1m", "-XX:+UseSerialGC",
                   f"-Dlog4j2.configurationFile={log4j}", "-Djava.awt.headless=true",
                   "-cp", classpath, "kafka.Kafka", str(properties)]
        # A session of its own: the broker must not get the test runner's Ctrl-C before we stop it.
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._wait_ready(timeout)

    def _format(self, classpath: str, properties: Path) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        command = ["java", "-Xmx128m", "-cp", classpath, "kafka.tools.StorageTool", "format",
                   "-t", _cluster_id(), "-c", str(properties)]
        for user in self.scram_users:
            command += ["--add-scram", f"SCRAM-SHA-256=[name={user.name},password={user.password}]"]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stderr or result.stdout).strip()[-2000:]
            raise KafkaError(f"kafka storage format failed: {output}")
        self._formatted = True

    def _write_config(self) -> Path:
        keystore = self.ca.keystore("broker", san="ip:127.0.0.1,dns:localhost")
        truststore = self.ca.truststore()
        host = "127.0.0.1"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{host}:{self.controller_port}",
            "listeners": (f"PLAINTEXT://{host}:{self.plain_port},CONTROLLER://{host}:{self.controller_port},"
                          f"SSL://{host}:{self.ssl_port},SASL_SSL://{host}:{self.sasl_port}"),
            "advertised.listeners": (f"PLAINTEXT://{host}:{self.plain_port},SSL://{host}:{self.ssl_port},"
                                     f"SASL_SSL://{host}:{self.sasl_port}"),
            "listener.security.protocol.map":
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.num.partitions": "4",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tests detect a killed worker within seconds; production keeps Kafka's 45 s default.
            "group.min.session.timeout.ms": "1000",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.backoff.ms": "1000",
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(keystore),
            "ssl.keystore.password": _STORE_PASSWORD,
            "ssl.key.password": _STORE_PASSWORD,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(truststore),
            "ssl.truststore.password": _STORE_PASSWORD,
            "listener.name.ssl.ssl.client.auth": "required",
            # The principal of a client certificate is its CN alone: "User:worker-7".
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+).*$/$1/,DEFAULT",
            "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-256",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        }
        path = self.base_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in lines.items()))
        return path

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                raise KafkaError(f"broker exited with {code} while starting:\n{self.tail()}")
            if _answers_metadata(self.bootstrap):
                return
            time.sleep(0.2)
        self.stop()
        raise KafkaError(f"broker not ready after {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL only if it hangs. Returns the exit code (143 is a clean stop)."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise KafkaError(f"broker ignored SIGTERM for {timeout:.0f} s and was killed") from None
        if process.returncode not in _CLEAN_EXIT:
            raise KafkaError(f"broker exited with {process.returncode}:\n{self.tail()}")
        return process.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no broker log: {exc.strerror})"


def _cluster_id() -> str:
    # What StorageTool random-uuid prints: a type-4 UUID, URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _answers_metadata(bootstrap: str) -> bool:
    """True once the broker serves a metadata request (the listener alone opens earlier)."""
    host, port = bootstrap.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return False  # not listening yet: spare aiokafka's connection-error logging
    outcome: list[bool] = []

    def probe() -> None:
        outcome.append(asyncio.run(_probe(bootstrap)))

    # A thread of its own: the caller may be a sync pytest fixture inside a running event loop's thread.
    thread = threading.Thread(target=probe, name="kafka-ready-probe")
    thread.start()
    thread.join()
    return bool(outcome and outcome[0])


async def _probe(bootstrap: str) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError as ClientError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
    try:
        await admin.start()
        await admin.list_topics()
        return True
    except (TimeoutError, ClientError, OSError):
        return False
    finally:
        await admin.close()


def main() -> int:
    """`python -m qscrypt.devnet.kafka [DIR]`: a broker to point workers at by hand, until Ctrl-C."""
    import sys
    import tempfile

    base = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="qscrypt-kafka-"))
    broker = KafkaBroker(base)
    try:
        broker.start()
        print(f"plaintext {broker.bootstrap}\nmTLS      {broker.ssl_bootstrap} (CA {broker.ca.pem})\n"
              f"data      {base}\nCtrl-C stops it", flush=True)
        # Blocked only now: the broker, a child, must not inherit a mask that blocks its SIGTERM.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
