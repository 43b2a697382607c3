"""A local single-node Apache Kafka broker (KRaft) run from Maven Central jars.

    python -m airq_dev.local_kafka start     # fetch jars once, format storage, start, wait until ready
    python -m airq_dev.local_kafka stop      # SIGTERM, wait for a clean shutdown
    python -m airq_dev.local_kafka status
    python -m airq_dev.local_kafka fetch     # only resolve the jars into kafka/libs

Nothing is started when `AIRQ_BROKER` names a broker. State lives under `.kafka/` in the project root
(`data/`, `logs/server.log`, `broker.pid`); the jars are cached in `kafka/libs/` and `~/.m2`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KAFKA_DIR = ROOT / "kafka"
CLUSTER_ID = "4L6g3nShT-eMCtK--X86sw"
MIN_JAVA = 17
HEAP = "-Xms256m -Xmx768m"


class BrokerError(RuntimeError):
    """A problem the user must fix; the message says what and how."""


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
        return self.state_dir / "broker.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "logs" / "server.log"

    @property
    def stdout_file(self) -> Path:
        return self.state_dir / "logs" / "broker.out"


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


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def answers_metadata(bootstrap: str, timeout: float = 5.0) -> bool:
    """True when a Kafka broker at `bootstrap` answers a metadata request."""

    async def probe() -> bool:
        import logging

        from aiokafka import AIOKafkaClient

        # A refused connection is an expected answer here, not an error worth a log line.
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

        client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
        try:
            await asyncio.wait_for(client.bootstrap(), timeout)
            return bool(client.cluster.brokers())
        except Exception:
            return False
        finally:
            await client.close()

    return asyncio.run(probe())


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
    """True when `pid` is a Java process running kafka.Kafka with `config`.

    A pid file can outlive its process, and the pid can then name any other program; only a broker started with
    this very configuration file may be signalled.
    """
    args = process_command_line(pid)
    if not args:
        return False
    return Path(args[0]).name.startswith("java") and "kafka.Kafka" in args and str(config) in args


def _read_pid(broker: LocalBroker) -> int | None:
    try:
        pid = int(broker.pid_file.read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def _write_config(broker: LocalBroker) -> Path:
    text = (KAFKA_DIR / "server.properties").read_text()
    data = broker.state_dir / "data"
    text = re.sub(r"(?m)^log\.dirs=.*$", f"log.dirs={data}", text)
    text = text.replace("127.0.0.1:9092", f"127.0.0.1:{broker.port}")
    text = text.replace("127.0.0.1:9093", f"127.0.0.1:{broker.controller_port}")
    path = broker.state_dir / "server.properties"
    path.write_text(text)
    return path


def start(broker: LocalBroker = LocalBroker(), wait_s: float = 90.0) -> str:
    """Start the broker in the background unless one answers already; return its bootstrap address."""
    if answers_metadata(broker.bootstrap, timeout=2.0):
        print(f"Kafka broker already running on {broker.bootstrap}", flush=True)
        return broker.bootstrap
    for port in (broker.port, broker.controller_port):
        if _port_open(port):
            raise BrokerError(
                f"Port {port} is taken by something that is not a Kafka broker: stop it, or point "
                f"AIRQ_BROKER at an existing broker (e.g. AIRQ_BROKER=kafka://host:9092)."
            )
    check_java()
    libs = fetch_jars()
    (broker.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    config = _write_config(broker)
    classpath = f"{libs}/*"
    java = shutil.which("java") or "java"
    fmt = subprocess.run(
        [
            java,
            "-cp",
            classpath,
            "kafka.tools.StorageTool",
            "format",
            "--ignore-formatted",
            "-t",
            CLUSTER_ID,
            "-c",
            str(config),
        ],
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        raise BrokerError(f"Formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}".strip())
    cmd = [
        java,
        *HEAP.split(),
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dkafka.logs.dir={broker.state_dir / 'logs'}",
        f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.properties'}",
        "-cp",
        classpath,
        "kafka.Kafka",
        str(config),
    ]
    out = open(broker.stdout_file, "ab")
    # A new session: Ctrl-C in the terminal must not reach the broker before the worker has stopped.
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    broker.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(
                f"The Kafka broker exited with code {proc.returncode}; see {broker.log_file} and {broker.stdout_file}"
            )
        if _port_open(broker.port) and answers_metadata(broker.bootstrap, timeout=2.0):
            print(
                f"Kafka broker started on {broker.bootstrap} (pid {proc.pid}, log {broker.log_file})",
                flush=True,
            )
            return broker.bootstrap
        time.sleep(0.5)
    stop(broker)
    raise BrokerError(f"The Kafka broker did not answer within {wait_s:.0f} s; see {broker.log_file}")


def stop(broker: LocalBroker = LocalBroker(), wait_s: float = 30.0) -> bool:
    """Stop the broker this launcher started; True when one was running."""
    pid = _read_pid(broker)
    if pid is None:
        broker.pid_file.unlink(missing_ok=True)
        return False
    config = broker.state_dir / "server.properties"
    if not is_our_kafka(pid, config):
        print(f"{broker.pid_file} names pid {pid}, which is not this Kafka broker: not signalling it", flush=True)
        broker.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not is_our_kafka(pid, config):
            break
        time.sleep(0.2)
    else:
        os.kill(pid, signal.SIGKILL)
    broker.pid_file.unlink(missing_ok=True)
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
