"""Production-shaped Kafka on loopback: a 3-node KRaft cluster and a TLS + SASL broker, from the same jars.

airq must work on clusters that replicate, encrypt, authenticate and lose brokers; these run such clusters on
one machine so that tests can check it against real broker processes.

    python -m airq_dev.kafka_cluster start     # 3 combined broker+controller nodes on 127.0.0.1:29092-29094
    python -m airq_dev.kafka_cluster stop
    python -m airq_dev.kafka_cluster status

The cluster's broker defaults are deliberately the weakest (`default.replication.factor=1`,
`min.insync.replicas=1`): airq must ask for replication itself. State lives under `.kafka-cluster/` (one
directory per node: `server.properties`, `data/`, `logs/`, `kafka.pid`). Stopping signals only processes whose
command line is Java running kafka.Kafka with that node's configuration file. How a node is run is in
`kafka_node`.
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from airq_app.kafka.security import KafkaSecurity
from airq_dev.kafka_node import (
    ROOT,
    BrokerError,
    KafkaNode,
    check_java,
    fetch_jars,
    format_all,
    metadata_brokers,
    port_open,
    properties,
    stop_nodes,
    wait_until,
)
from airq_dev.kafka_pki import Pki, make_pki

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


def new_cluster_id() -> str:
    """A random KRaft cluster id (22 URL-safe base64 characters) that does not start with "-": the storage tool's
    argument parser would take such an id for an option (Kafka's own Uuid.randomUuid() avoids them too)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


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
            node.write_config(properties(self.node_config(node)))
        format_all(to_start, self._cluster_id())
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

        def sees_all(node: KafkaNode) -> bool:
            return port_open(node.port) and metadata_brokers(node.bootstrap) >= expected

        for node in wanted:
            if not wait_until(wanted, partial(sees_all, node), deadline):
                raise BrokerError(f"Kafka node {node.node_id} was not ready within {wait_s:.0f} s; see {node.log_file}")

    def stop(self, wait_s: float = 60.0) -> list[int]:
        """Stop every node this cluster's directory started (SIGTERM, then SIGKILL); the ids that were running."""
        return stop_nodes(self.nodes, wait_s)

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
        stop_nodes([node], 60.0)
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
        self.node = KafkaNode(
            1, self.state_dir / "node", sasl_ssl_port, controller_port, heap, label="The secured Kafka broker"
        )
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
            self.node.write_config(properties(self.config(self.pki)))
            scram = []
            for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
                scram += ["--add-scram", f"{mechanism}=[name={self.username},password={self.password}]"]
            scram += ["--add-scram", f"SCRAM-SHA-512=[name=admin,password={self._secrets['admin']}]"]
            format_all([self.node], new_cluster_id(), scram)
            self.node.launch()
        security = self.security()

        def ready() -> bool:
            return port_open(self.node.port) and bool(metadata_brokers(self.bootstrap, security))

        if not wait_until([self.node], ready, time.monotonic() + wait_s):
            self.stop()
            raise BrokerError(f"The secured Kafka broker was not ready within {wait_s:.0f} s")
        return self.bootstrap

    def stop(self, wait_s: float = 30.0) -> bool:
        return bool(stop_nodes([self.node], wait_s))


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
