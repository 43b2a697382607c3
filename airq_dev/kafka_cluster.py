"""Production-shaped Kafka on loopback: a 3-node KRaft cluster and a TLS + SASL broker, from the same jars.

airq must work on clusters that replicate, encrypt, authenticate and lose brokers; these run such clusters on
one machine so that tests can check it against real broker processes.

    python -m airq_dev.kafka_cluster start     # 3 combined broker+controller nodes on 127.0.0.1:29092-29094
    python -m airq_dev.kafka_cluster stop
    python -m airq_dev.kafka_cluster status

The cluster's broker defaults are deliberately the weakest (`default.replication.factor=1`,
`min.insync.replicas=1`): airq must ask for replication itself. State lives under `.kafka-cluster/` (one
directory per node: `server.properties`, `data/`, `logs/`, `kafka.pid`). Stopping signals only processes whose
command line is Java running kafka.Kafka with that node's configuration file.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airq_app.kafka.admin import quiet_aiokafka
from airq_app.kafka.security import KafkaSecurity
from airq_dev.kafka_pki import Pki, make_pki
from airq_dev.local_kafka import KAFKA_DIR, ROOT, BrokerError, _port_open, check_java, fetch_jars, is_our_kafka

STATE_DIR = ROOT / ".kafka-cluster"
BROKER_PORTS = (29092, 29093, 29094)
CONTROLLER_PORTS = (29192, 29193, 29194)
HEAP = "-Xms64m -Xmx384m"

# Shared by every node this module writes: small, quick to start, no topic created behind airq's back.
COMMON = {
    "auto.create.topics.enable": "false",
    "group.initial.rebalance.delay.ms": "0",
    "log.cleaner.dedupe.buffer.size": "16777216",
    "num.io.threads": "2",
    "num.network.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "num.replica.fetchers": "1",
    "background.threads": "2",
    "log.retention.hours": "24",
}


async def _metadata_brokers(bootstrap: str, kwargs: Mapping[str, Any], timeout: float) -> set[int]:
    from aiokafka import AIOKafkaClient

    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **kwargs)
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        return {broker.nodeId for broker in client.cluster.brokers()}
    except Exception:
        return set()
    finally:
        await client.close()


def metadata_brokers(bootstrap: str, security: KafkaSecurity | None = None, timeout: float = 3.0) -> set[int]:
    """Node ids of the live brokers that `bootstrap` reports (empty when it does not answer)."""
    kwargs = (security or KafkaSecurity()).aiokafka_kwargs()
    # Probing a broker that is still starting fails on purpose; those failures are not worth log lines.
    with quiet_aiokafka():
        return asyncio.run(_metadata_brokers(bootstrap, kwargs, timeout))


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 URL-safe base64 characters) that does not start with "-": the storage tool's
    argument parser would take such an id for an option (Kafka's own Uuid.randomUuid() avoids them too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


def _properties(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


@dataclass
class KafkaNode:
    """One kafka.Kafka process: its directory, configuration, pid file and (when started here) its Popen."""

    node_id: int
    directory: Path
    port: int
    controller_port: int
    heap: str = HEAP
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.directory / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.directory / "logs" / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The pid of this node's broker, only while that process runs this node's configuration."""
        if self.process is not None and self.process.poll() is not None:
            self.process = None
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if is_our_kafka(pid, self.config_path) else None

    def write_config(self, values: Mapping[str, str]) -> None:
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(_properties(values))
        self.config_path.chmod(0o600)  # may hold SASL passwords

    def format_storage(self, cluster_id: str, extra: Sequence[str] = ()) -> subprocess.Popen[str]:
        """Start formatting this node's log directory (once; an already formatted one is kept)."""
        java = shutil.which("java") or "java"
        cmd = [java, "-Xmx128m", "-cp", f"{fetch_jars()}/*", "kafka.tools.StorageTool", "format"]
        cmd += ["--ignore-formatted", "-t", cluster_id, "-c", str(self.config_path), *extra]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def launch(self) -> None:
        if self.pid is not None:
            return
        if _port_open(self.port) or _port_open(self.controller_port):
            raise BrokerError(
                f"Port {self.port} or {self.controller_port} of Kafka node {self.node_id} is taken by another"
                f" process: stop it or choose other ports"
            )
        java = shutil.which("java") or "java"
        logs = self.directory / "logs"
        cmd = [
            java,
            *self.heap.split(),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={logs}",
            f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
            "-cp",
            f"{fetch_jars()}/*",
            "kafka.Kafka",
            str(self.config_path),
        ]
        with open(logs / "kafka.out", "ab") as out:
            self.process = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.pid_file.write_text(str(self.process.pid))

    def signal(self, sig: signal.Signals) -> bool:
        """Send `sig` to this node's broker if it runs; True when it was sent."""
        pid = self.pid
        if pid is None:
            return False
        os.kill(pid, sig)
        return True

    def wait_exit(self, timeout: float) -> bool:
        """Wait until the broker has exited (and reap it when started here); True when it did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None:
                try:
                    self.process.wait(timeout=0.2)
                except subprocess.TimeoutExpired:
                    continue
                self.process = None
            if self.pid is None:
                return True
            time.sleep(0.2)
        return self.pid is None

    def exited_early(self) -> bool:
        return self.process is not None and self.process.poll() is not None


def _format_all(nodes: Sequence[KafkaNode], cluster_id: str, extra: Sequence[str] = ()) -> None:
    running = [(node, node.format_storage(cluster_id, extra)) for node in nodes]
    for node, proc in running:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise BrokerError(f"Formatting Kafka storage of node {node.node_id} failed:\n{output.strip()}")


def _stop_nodes(nodes: Sequence[KafkaNode], wait_s: float) -> list[int]:
    """SIGTERM every running node at once (a quorum that loses its members one by one stalls the last ones)."""
    stopped = [node for node in nodes if node.signal(signal.SIGTERM)]
    deadline = time.monotonic() + wait_s
    for node in stopped:
        if not node.wait_exit(max(0.5, deadline - time.monotonic())):
            node.signal(signal.SIGKILL)
            node.wait_exit(10)
    for node in nodes:
        if node.pid is None:
            node.pid_file.unlink(missing_ok=True)
    return [node.node_id for node in stopped]


class Cluster:
    """A KRaft cluster of combined broker+controller nodes on loopback (3 by default)."""

    def __init__(
        self,
        state_dir: Path = STATE_DIR,
        ports: Sequence[int] = BROKER_PORTS,
        controller_ports: Sequence[int] = CONTROLLER_PORTS,
        heap: str = HEAP,
    ) -> None:
        if len(ports) != len(controller_ports) or not ports:
            raise ValueError("one broker port and one controller port per node")
        self.state_dir = Path(state_dir)
        self.nodes = [
            KafkaNode(i + 1, self.state_dir / f"node-{i + 1}", port, cport, heap)
            for i, (port, cport) in enumerate(zip(ports, controller_ports, strict=True))
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def pids(self) -> dict[int, int | None]:
        return {node.node_id: node.pid for node in self.nodes}

    def node(self, node_id: int) -> KafkaNode:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no node {node_id} in this cluster (nodes {[n.node_id for n in self.nodes]})")

    def _cluster_id(self) -> str:
        path = self.state_dir / "cluster.id"
        if not path.exists():
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(new_cluster_id())
        return path.read_text().strip()

    def node_config(self, node: KafkaNode) -> dict[str, str]:
        n = len(self.nodes)
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(node.directory / "data"),
            # The weakest defaults on purpose: airq must ask for its replication factor and min ISR itself.
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "num.partitions": "1",
            "offsets.topic.replication.factor": str(min(3, n)),
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": str(min(3, n)),
            "transaction.state.log.min.isr": str(min(2, n)),
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(min(3, n)),
            "share.coordinator.state.topic.min.isr": str(min(2, n)),
            # A killed node is fenced (and leaves the ISRs) after 6 s instead of 9 s.
            "broker.session.timeout.ms": "6000",
            "broker.heartbeat.interval.ms": "1000",
            **COMMON,
        }

    def start(self, wait_s: float = 120.0) -> str:
        """Start the nodes that are not running, wait until every broker is in the metadata; return bootstrap."""
        check_java()
        fetch_jars()
        to_start = [node for node in self.nodes if node.pid is None]
        for node in to_start:
            node.write_config(self.node_config(node))
        _format_all(to_start, self._cluster_id())
        try:
            for node in to_start:
                node.launch()
            self.wait_ready(wait_s)
        except BaseException:
            self.stop()
            raise
        return self.bootstrap

    def wait_ready(self, wait_s: float, node_ids: Sequence[int] | None = None) -> None:
        """Wait until each node in `node_ids` (default all) answers and reports all of them as live brokers."""
        wanted = [self.node(i) for i in node_ids] if node_ids else self.nodes
        expected = {node.node_id for node in self.nodes}
        deadline = time.monotonic() + wait_s
        pending = list(wanted)
        while pending:
            for node in [n for n in wanted if n.exited_early()]:
                raise BrokerError(f"Kafka node {node.node_id} exited; see {node.log_file}")
            node = pending[0]
            if _port_open(node.port) and metadata_brokers(node.bootstrap) >= expected:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                raise BrokerError(f"Kafka node {node.node_id} was not ready within {wait_s:.0f} s; see {node.log_file}")
            time.sleep(0.5)

    def stop(self, wait_s: float = 60.0) -> list[int]:
        """Stop every node this cluster's directory started (SIGTERM, then SIGKILL); the ids that were running."""
        return _stop_nodes(self.nodes, wait_s)

    def kill(self, node_id: int) -> int:
        """SIGKILL one node, as a crash would; return the pid that was killed."""
        node = self.node(node_id)
        pid = node.pid
        if pid is None or not node.signal(signal.SIGKILL):
            raise BrokerError(f"Kafka node {node_id} is not running")
        node.wait_exit(10)
        return pid

    def restart(self, node_id: int, wait_s: float = 90.0) -> None:
        """Stop one node if it runs, start it again and wait until it is back in the metadata."""
        node = self.node(node_id)
        _stop_nodes([node], 60.0)
        node.launch()
        self.wait_ready(wait_s, [node_id])

    def status(self) -> dict[int, dict[str, Any]]:
        return {
            node.node_id: {
                "pid": node.pid,
                "bootstrap": node.bootstrap,
                "brokers": sorted(metadata_brokers(node.bootstrap)),
            }
            for node in self.nodes
        }


class SecureBroker:
    """One KRaft node with a SASL_SSL listener (SCRAM-SHA-512, SCRAM-SHA-256, PLAIN), optionally SSL and PLAINTEXT.

    TLS comes from a CA made here (`ca_file` for clients); the SSL listener requires a client certificate
    (`client_cert_file`/`client_key_file`). SCRAM users are added when the storage is formatted; brokers talk to
    each other over SASL_SSL with SCRAM-SHA-512 as user `admin`. The controller listener stays PLAINTEXT on loopback.
    """

    def __init__(
        self,
        state_dir: Path,
        sasl_ssl_port: int,
        controller_port: int,
        ssl_port: int | None = None,
        plaintext_port: int | None = None,
        username: str = "airq",
        heap: str = HEAP,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.ssl_port = ssl_port
        self.plaintext_port = plaintext_port
        self.username = username
        self.node = KafkaNode(1, self.state_dir / "node", sasl_ssl_port, controller_port, heap)
        self._secrets = self._load_secrets()
        self.pki: Pki | None = None

    def _load_secrets(self) -> dict[str, str]:
        path = self.state_dir / "secrets.json"
        if path.exists():
            return json.loads(path.read_text())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        values = {"password": secrets.token_hex(16), "admin": secrets.token_hex(16), "store": secrets.token_hex(12)}
        path.touch(mode=0o600)
        path.write_text(json.dumps(values))
        return values

    @property
    def password(self) -> str:
        """The SASL password of `username` (the same for SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN)."""
        return self._secrets["password"]

    @property
    def bootstrap(self) -> str:
        return self.node.bootstrap

    @property
    def ssl_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.ssl_port}" if self.ssl_port else None

    @property
    def plaintext_bootstrap(self) -> str | None:
        return f"127.0.0.1:{self.plaintext_port}" if self.plaintext_port else None

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        return self.state_dir / "tls" / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.state_dir / "tls" / "client.key"

    @property
    def pid(self) -> int | None:
        return self.node.pid

    def security(self, mechanism: str = "SCRAM-SHA-512", password: str | None = None) -> KafkaSecurity:
        """Client settings for the SASL_SSL listener as `username`."""
        return KafkaSecurity(
            protocol="SASL_SSL",
            mechanism=mechanism,
            username=self.username,
            password=self.password if password is None else password,
            ca_file=str(self.ca_file),
        )

    def config(self, pki: Pki) -> dict[str, str]:
        node, store = self.node, self._secrets["store"]
        listeners = {"SASL_SSL": node.port, "SSL": self.ssl_port, "PLAINTEXT": self.plaintext_port}
        active = {name: port for name, port in listeners.items() if port}
        client_listeners = ",".join(f"{name}://127.0.0.1:{port}" for name, port in active.items())
        admin = f'username="admin" password="{self._secrets["admin"]}"'
        plain_users = f'user_admin="{self._secrets["admin"]}" user_{self.username}="{self.password}"'
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{node.controller_port}",
            "listeners": f"{client_listeners},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": client_listeners,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": ",".join(["CONTROLLER:PLAINTEXT", *(f"{n}:{n}" for n in active)]),
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                f"org.apache.kafka.common.security.scram.ScramLoginModule required {admin};"
            ),
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {admin} {plain_users};"
            ),
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(pki.broker_keystore),
            "ssl.keystore.password": store,
            "ssl.key.password": store,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(pki.truststore),
            "ssl.truststore.password": store,
            "listener.name.ssl.ssl.client.auth": "required",
            "log.dirs": str(node.directory / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            **COMMON,
        }

    def start(self, wait_s: float = 90.0) -> str:
        """Make the CA and certificates (once), format with the SCRAM users, start; return the SASL_SSL bootstrap."""
        check_java()
        fetch_jars()
        self.pki = make_pki(self.state_dir / "tls", self._secrets["store"])
        if self.node.pid is None:
            self.node.write_config(self.config(self.pki))
            scram = []
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                scram += ["--add-scram", f"{mechanism}=[name={self.username},password={self.password}]"]
            scram += ["--add-scram", f"SCRAM-SHA-512=[name=admin,password={self._secrets['admin']}]"]
            _format_all([self.node], new_cluster_id(), scram)
            self.node.launch()
        security = self.security()
        deadline = time.monotonic() + wait_s
        while not (_port_open(self.node.port) and metadata_brokers(self.bootstrap, security)):
            if self.node.exited_early():
                raise BrokerError(f"The secured Kafka broker exited; see {self.node.log_file}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"The secured Kafka broker was not ready within {wait_s:.0f} s")
            time.sleep(0.5)
        return self.bootstrap

    def stop(self, wait_s: float = 30.0) -> bool:
        return bool(_stop_nodes([self.node], wait_s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airq_dev.kafka_cluster", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    cluster = Cluster()
    try:
        if args.command == "start":
            began = time.monotonic()
            bootstrap = cluster.start()
            print(f"Kafka cluster up in {time.monotonic() - began:.0f} s: AIRQ_BROKER=kafka://{bootstrap}")
            print(f"pids {cluster.pids}; logs in {cluster.state_dir}/node-*/logs/server.log")
        elif args.command == "stop":
            stopped = cluster.stop()
            print(f"Kafka cluster nodes stopped: {stopped}" if stopped else "No Kafka cluster node was running.")
        else:
            status = cluster.status()
            for node_id, info in status.items():
                state = f"up (pid {info['pid']}), sees brokers {info['brokers']}" if info["pid"] else "down"
                print(f"node {node_id} on {info['bootstrap']}: {state}")
            return 0 if all(info["pid"] for info in status.values()) else 1
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
