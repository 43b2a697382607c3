"""A local single-node Apache Kafka broker (KRaft) run from Maven Central jars.

    python -m airq_dev.local_kafka start     # fetch jars once, format storage, start, wait until ready
    python -m airq_dev.local_kafka stop      # SIGTERM, wait for a clean shutdown
    python -m airq_dev.local_kafka status
    python -m airq_dev.local_kafka fetch     # only resolve the jars into kafka/libs

Nothing is started when `AIRQ_BROKER` names a broker. State lives under `.kafka/` in the project root
(`data/`, `logs/server.log`, `broker.pid`); the jars are cached in `kafka/libs/` and `~/.m2`. How a node is
run is in `kafka_node`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from airq_dev.kafka_node import (
    KAFKA_DIR,
    ROOT,
    BrokerError,
    KafkaNode,
    answers_metadata,
    check_java,
    fetch_jars,
    format_all,
    port_open,
    stop_nodes,
    wait_until,
)

CLUSTER_ID = "4L6g3nShT-eMCtK--X86sw"
HEAP = "-Xms256m -Xmx768m"


@dataclass(frozen=True)
class LocalBroker:
    state_dir: Path = ROOT / ".kafka"
    port: int = 9092
    controller_port: int = 9093

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.node().pid_file

    @property
    def log_file(self) -> Path:
        return self.node().log_file

    @property
    def stdout_file(self) -> Path:
        return self.node().out_file

    def node(self) -> KafkaNode:
        """The Kafka node this broker is (its process is only known to the node that started it)."""
        return KafkaNode(
            1,
            self.state_dir,
            self.port,
            self.controller_port,
            HEAP,
            label="The Kafka broker",
            pid_name="broker.pid",
            out_name="broker.out",
        )


def configured_broker() -> str | None:
    """The broker named by AIRQ_BROKER (also from .env), or None to use the local one."""
    value = os.environ.get("AIRQ_BROKER")
    if value is None:
        env_file = ROOT / ".env"
        if env_file.exists():
            for line in env_file.read_text().splitlines():
                m = re.match(r"\s*(?:export\s+)?AIRQ_BROKER\s*=\s*['\"]?([^'\"#\s]*)", line)
                if m:
                    value = m.group(1)
    return value or None


def _config(broker: LocalBroker) -> str:
    """kafka/server.properties with this broker's data directory and ports."""
    text = (KAFKA_DIR / "server.properties").read_text()
    data = broker.state_dir / "data"
    text = re.sub(r"(?m)^log\.dirs=.*$", f"log.dirs={data}", text)
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{broker.port}")
    return text.replace("127.0.0.1:9093", f"127.0.0.1:{broker.controller_port}")


def start(broker: LocalBroker = LocalBroker(), wait_s: float = 90.0) -> str:
    """Start the broker in the background unless one answers already; return its bootstrap address."""
    if answers_metadata(broker.bootstrap, timeout=2.0):
        print(f"Kafka broker already running on {broker.bootstrap}", flush=True)
        return broker.bootstrap
    for port in (broker.port, broker.controller_port):
        if port_open(port):
            raise BrokerError(
                f"Port {port} is taken by something that is not a Kafka broker: stop it, or point "
                f"AIRQ_BROKER at an existing broker (e.g. AIRQ_BROKER=kafka://host:9092)."
            )
    check_java()
    fetch_jars()
    node = broker.node()
    node.write_config(_config(broker))
    format_all([node], CLUSTER_ID)
    node.launch()

    def ready() -> bool:
        return port_open(broker.port) and answers_metadata(broker.bootstrap, timeout=2.0)

    if wait_until([node], ready, time.monotonic() + wait_s):
        print(f"Kafka broker started on {broker.bootstrap} (pid {node.pid}, log {broker.log_file})", flush=True)
        return broker.bootstrap
    stop(broker)
    raise BrokerError(f"The Kafka broker did not answer within {wait_s:.0f} s; see {broker.log_file}")


def stop(broker: LocalBroker = LocalBroker(), wait_s: float = 30.0) -> bool:
    """Stop the broker this launcher started; True when one was running."""
    node = broker.node()
    pid = node.pid
    if pid is None:
        try:
            recorded = int(broker.pid_file.read_text().strip())
            os.kill(recorded, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            pass
        else:
            print(
                f"{broker.pid_file} names pid {recorded}, which is not this Kafka broker: not signalling it", flush=True
            )
        broker.pid_file.unlink(missing_ok=True)
        return False
    stop_nodes([node], wait_s)
    print(f"Kafka broker stopped (pid {pid})", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airq_dev.local_kafka", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["start", "stop", "status", "fetch"])
    args = parser.parse_args(argv)
    broker = LocalBroker()
    try:
        if args.command == "fetch":
            check_java()
            print(f"Kafka jars in {fetch_jars()}")
        elif configured_broker() and args.command == "start":
            print(f"AIRQ_BROKER={configured_broker()} is set: not starting a local broker.")
        elif args.command == "start":
            start(broker)
        elif args.command == "stop":
            if not stop(broker):
                print("No local Kafka broker was running.")
        else:
            up = answers_metadata(broker.bootstrap, timeout=2.0)
            print(f"Kafka broker on {broker.bootstrap}: {'up' if up else 'down'}")
            return 0 if up else 1
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
