"""One Apache Kafka node (KRaft) run from the Maven Central jars: what the local broker (`local_kafka`) and the
local clusters (`kafka_cluster`) share.

Java is checked and the jars resolved once into `kafka/libs/`; a node has a directory holding its
`server.properties`, `data/`, `logs/` and pid file; its storage is formatted, `kafka.Kafka` is started in a
session of its own (Ctrl-C in the terminal must not reach it before the workers have stopped), and the caller waits
until it answers. Stopping signals only a process whose command line is Java running kafka.Kafka with that node's
configuration file: a pid file can outlive its process, and the pid can then name any other program.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airq_app.kafka.admin import quiet_aiokafka
from airq_app.kafka.security import KafkaSecurity

ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = ROOT / "kafka"
MIN_JAVA = 17


class BrokerError(RuntimeError):
    """A problem the user must fix; the message says what and how."""


def _java_major() -> int:
    java = shutil.which("java")
    if not java:
        raise BrokerError("Java not found: install a JDK 17 or newer (e.g. `apt install openjdk-17-jdk`).")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        raise BrokerError(f"Cannot tell the Java version from `java -version`: {out.strip()[:200]}")
    major = int(m.group(1))
    return int(m.group(2)) if major == 1 and m.group(2) else major


def check_java() -> None:
    major = _java_major()
    if major < MIN_JAVA:
        raise BrokerError(f"Java {major} found, Kafka 4 needs Java {MIN_JAVA} or newer: install a newer JDK.")


def fetch_jars() -> Path:
    """Resolve Kafka and its runtime dependencies into kafka/libs (once; cached)."""
    libs = KAFKA_DIR / "libs"
    pom = KAFKA_DIR / "pom.xml"
    stamp = libs / ".resolved"
    if stamp.exists() and stamp.stat().st_mtime >= pom.stat().st_mtime:
        return libs
    mvn = shutil.which("mvn")
    if not mvn:
        raise BrokerError("Maven not found: install it (e.g. `apt install maven`); it fetches the Kafka jars.")
    print("Fetching Apache Kafka jars from Maven Central (first run only)...", flush=True)
    if libs.exists():
        shutil.rmtree(libs)
    proc = subprocess.run([mvn, "-B", "-q", "-f", str(pom), "package"], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BrokerError(
            "Maven could not fetch the Kafka jars (check the network or a proxy in ~/.m2/settings.xml):\n" + tail
        )
    stamp.touch()
    return libs


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


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


def answers_metadata(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when a Kafka broker at `bootstrap` answers a metadata request.

    aiokafka's own log lines stay off in this process afterwards: a refused connection is an expected answer here.
    """
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    return bool(asyncio.run(_metadata_brokers(bootstrap, {}, timeout)))


def process_command_line(pid: int) -> list[str] | None:
    """The arguments of process `pid`, or None when there is no such (live) process."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return [part.decode(errors="replace") for part in raw.split(b"\0") if part] or None
    except FileNotFoundError:
        return None
    except OSError:
        pass
    # No /proc (macOS): ask ps; arguments with spaces cannot be told apart, which the check below tolerates.
    out = subprocess.run(["ps", "-ww", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.split() if out.returncode == 0 and out.stdout.strip() else None


def is_our_kafka(pid: int, config: Path) -> bool:
    """True when `pid` is a Java process running kafka.Kafka with `config` (see the module docstring)."""
    args = process_command_line(pid)
    if not args:
        return False
    return Path(args[0]).name.startswith("java") and "kafka.Kafka" in args and str(config) in args


def properties(values: Mapping[str, str]) -> str:
    """The text of a server.properties file."""
    return "".join(f"{key}={value}\n" for key, value in values.items())


@dataclass
class KafkaNode:
    """One kafka.Kafka process: its directory, configuration, pid file and (when started here) its Popen."""

    node_id: int
    directory: Path
    port: int
    controller_port: int
    heap: str
    label: str = ""  # how messages name it; "Kafka node <id>" by default
    pid_name: str = "kafka.pid"
    out_name: str = "kafka.out"  # its standard output and error, in logs/
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.label = self.label or f"Kafka node {self.node_id}"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def pid_file(self) -> Path:
        return self.directory / self.pid_name

    @property
    def log_file(self) -> Path:
        return self.directory / "logs" / "server.log"

    @property
    def out_file(self) -> Path:
        return self.directory / "logs" / self.out_name

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

    def write_config(self, text: str) -> None:
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)  # may hold SASL passwords

    def format_storage(self, cluster_id: str, extra: Sequence[str] = ()) -> subprocess.Popen[str]:
        """Start formatting this node's log directory (once; an already formatted one is kept)."""
        java = shutil.which("java") or "java"
        cmd = [java, "-Xmx128m", "-cp", f"{fetch_jars()}/*", "kafka.tools.StorageTool", "format"]
        cmd += ["--ignore-formatted", "-t", cluster_id, "-c", str(self.config_path), *extra]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def launch(self) -> None:
        """Start the broker in the background unless it runs already."""
        if self.pid is not None:
            return
        if port_open(self.port) or port_open(self.controller_port):
            raise BrokerError(
                f"Port {self.port} or {self.controller_port} of {self.label} is taken by another process: stop it or"
                f" choose other ports"
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
        with open(self.out_file, "ab") as out:
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

    def check_running(self) -> None:
        """BrokerError when the broker started here has exited."""
        if self.process is not None and self.process.poll() is not None:
            raise BrokerError(
                f"{self.label} exited with code {self.process.returncode}; see {self.log_file} and {self.out_file}"
            )


def wait_until(nodes: Sequence[KafkaNode], ready: Callable[[], bool], deadline: float) -> bool:
    """Poll `ready()` every 0.5 s: True once it is, False once `deadline` (monotonic) has passed; BrokerError as
    soon as one of `nodes` started here has exited."""
    while True:
        for node in nodes:
            node.check_running()
        if ready():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def format_all(nodes: Sequence[KafkaNode], cluster_id: str, extra: Sequence[str] = ()) -> None:
    """Format the nodes' storage, all at once."""
    running = [(node, node.format_storage(cluster_id, extra)) for node in nodes]
    for node, proc in running:
        output, _ = proc.communicate()
        if proc.returncode != 0:
            raise BrokerError(f"Formatting the Kafka storage of {node.label} failed:\n{output.strip()}")


def stop_nodes(nodes: Sequence[KafkaNode], wait_s: float) -> list[int]:
    """SIGTERM every running node at once (a quorum that loses its members one by one stalls the last ones), then
    SIGKILL those still running after `wait_s`; the ids of the nodes that were running."""
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
