"""Helpers for tests that run real parts: worker processes, the broker, output files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from airq_app.settings import pipeline_keys
from airq_app.web.auth import token_headers

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def _client_kwargs(security: Any = None) -> dict[str, Any]:
    """aiokafka keyword arguments for a `KafkaSecurity` (None: plaintext)."""
    return security.aiokafka_kwargs() if security is not None else {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5.0, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for(predicate: Any, timeout: float, interval: float = 0.25, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


class Pipeline:
    """An isolated pipeline on the shared broker: its own topics (prefix), app id, output and files.

    `section__key=value` overrides a key of the shipped pipeline.json (`output__finish_idle_s=0`); a key the
    settings do not declare is refused here rather than by the worker at start."""

    def __init__(
        self,
        base: Path,
        bootstrap: str,
        kafka_env: dict[str, str] | None = None,
        web_token: str = "",
        **pipeline_overrides: Any,
    ) -> None:
        self.base = base
        self.bootstrap = bootstrap
        self.kafka_env = dict(kafka_env or {})  # AIRQ_KAFKA_* for every worker of this pipeline
        self.web_token = web_token  # AIRQ_WEB_TOKEN of every worker; Worker.get sends it
        self.prefix = f"t{uuid.uuid4().hex[:8]}-"
        self.output_dir = base / "output"
        self.output_dir.mkdir(parents=True, exist_ok=True)
        pipeline = json.loads((ROOT / "pipeline.json").read_text())
        pipeline.pop("$schema", None)
        self.app_id = f"airq-{self.prefix.rstrip('-')}"
        pipeline["app"]["id"] = self.app_id
        for dotted, value in pipeline_overrides.items():
            section, _, key = dotted.partition("__")
            if f"{section}.{key}" not in pipeline_keys():
                raise TypeError(f"Pipeline: {dotted} names no pipeline.json key (declared in airq_app.settings)")
            pipeline.setdefault(section, {})[key] = value
        self.pipeline_path = base / "pipeline.json"
        self.pipeline_path.write_text(json.dumps(pipeline, indent=2))
        self.workers: list[Worker] = []

    @property
    def topic(self) -> str:
        return self.prefix + "air_quality_telematics"

    @property
    def dlq_topic(self) -> str:
        return self.prefix + "air_quality_telematics_dlq"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_", "OPENAQ_"))}
        env.update(
            AIRQ_BROKER=f"kafka://{self.bootstrap}",
            AIRQ_PIPELINE=str(self.pipeline_path),
            AIRQ_OUTPUT_DIR=str(self.output_dir),
            AIRQ_TOPIC_PREFIX=self.prefix,
            PYTHONUNBUFFERED="1",
        )
        env.update(self.kafka_env)
        if self.web_token:
            env["AIRQ_WEB_TOKEN"] = self.web_token
        env.update(extra)
        return env

    def worker(self, name: str = "w1", role: str = "process", **extra: str) -> Worker:
        w = Worker(self, name, role, extra)
        self.workers.append(w)
        return w

    def stop_all(self) -> None:
        for w in self.workers:
            w.stop()


# Every worker process a test started, so that none outlives its test (see conftest.stop_leftover_workers).
STARTED_WORKERS: list[Worker] = []


class Worker:
    """`faust -A airq_app worker` as a user starts it, in a subprocess."""

    def __init__(self, pipeline: Pipeline, name: str, role: str, extra: dict[str, str]) -> None:
        self.pipeline = pipeline
        self.name = name
        self.port = free_port()
        self.data_dir = pipeline.base / f"data-{name}"
        self.log_path = pipeline.base / f"{name}.log"
        self.env = pipeline.env(AIRQ_WEB_PORT=str(self.port), AIRQ_DATA_DIR=str(self.data_dir), AIRQ_ROLE=role, **extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_ready: bool = True, timeout: float = 90.0) -> Worker:
        log = open(self.log_path, "ab")
        log.write(f"\n===== start {self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "faust"), "-A", "airq_app", "worker", "-l", "info"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.starts += 1
        STARTED_WORKERS.append(self)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def token(self) -> str:
        """The worker's web token (AIRQ_WEB_TOKEN of the pipeline or of this worker), "" when none is set."""
        return self.env.get("AIRQ_WEB_TOKEN", "")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """GET a path of this worker, with its web token unless `headers` says what to send instead."""
        if headers is None:
            headers = token_headers(self.token)
        code, body = http_get(self.url + path, headers=headers)
        try:
            return code, json.loads(body)
        except ValueError:
            return code, body.decode(errors="replace")

    def status(self) -> dict[str, Any]:
        return self.get("/airq/status")[1]

    def wait_ready(self, timeout: float = 90.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"worker {self.name} exited:\n{self.log_tail()}")
            try:
                return self.get("/airq/ready")[0] == 200
            except OSError:
                return False

        try:
            wait_for(ready, timeout, what=f"worker {self.name} ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def stop(self, timeout: float = 60.0) -> int | None:
        if not self.alive():
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.dump_stacks("did not stop")
            self.proc.kill()
            return self.proc.wait()

    def dump_stacks(self, why: str) -> None:
        """Append the worker's stacks to its log, e.g. when it did not stop: its asyncio tasks (SIGUSR1 makes the
        Faust worker print every thread and task), and what every thread is doing (py-spy, when installed)."""
        if self.proc is None or not self.alive():
            return
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        spy = VENV_BIN / "py-spy"
        if not spy.exists():
            return
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {why}: py-spy dump =====\n".encode())
            log.flush()
            subprocess.run(
                [str(spy), "dump", "--locals", "--pid", str(self.proc.pid)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=30,
                check=False,
            )

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes]],
    partitions: int | None = None,
    security: Any = None,
    acks: Any = 1,
) -> int:
    """Send (key, value) pairs with aiokafka; returns how many were sent."""

    async def go() -> int:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=262144, acks=acks, **_client_kwargs(security)
        )
        await producer.start()
        n = 0
        try:
            futures = []
            for key, value in messages:
                futures.append(await producer.send(topic, value=value, key=key))
                n += 1
            await producer.flush()
            for f in futures:
                await f
        finally:
            await producer.stop()
        return n

    return asyncio.run(go())


def create_topic(
    bootstrap: str, name: str, partitions: int = 8, replication_factor: int = 1, security: Any = None
) -> None:
    async def go() -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic
        from aiokafka.errors import TopicAlreadyExistsError

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_client_kwargs(security))
        await admin.start()
        try:
            await admin.create_topics([NewTopic(name, partitions, replication_factor)])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    asyncio.run(go())


def delete_topics(bootstrap: str, *prefixes: str, security: Any = None) -> list[str]:
    """Delete every topic whose name starts with one of `prefixes`; returns their names."""

    async def go() -> list[str]:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **_client_kwargs(security))
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefixes)]
            if names:
                await admin.delete_topics(names)
            return names
        finally:
            await admin.close()

    return asyncio.run(go())


def consume_all(bootstrap: str, topic: str, timeout: float = 5.0, security: Any = None) -> list[Any]:
    """Every message currently on `topic` (from the beginning)."""

    async def go() -> list[Any]:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
            **_client_kwargs(security),
        )
        await consumer.start()
        out: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(records)
                if not batch and out:
                    break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(go())


def topic_measurements(bootstrap: str, topic: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Every measurement on a measurements topic, whether a message holds one or a location's list of them."""
    out: list[dict[str, Any]] = []
    for message in consume_all(bootstrap, topic, timeout):
        data = json.loads(message.value)
        out.extend(data if isinstance(data, list) else [data])
    return out


def output_counts(output_dir: Path) -> tuple[Counter[tuple[int, str]], int]:
    """(sensor, time) counts over finished files, and the number of partial or invalid lines."""
    seen: Counter[tuple[int, str]] = Counter()
    bad = 0
    for path in output_dir.rglob("*.jsonl"):
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            bad += 1
        for line in data.splitlines():
            try:
                r = json.loads(line)
                seen[(r["sensor_id"], r["datetime_utc"])] += 1
            except (ValueError, KeyError):
                bad += 1
    return seen, bad


def finished_records(output_dir: Path) -> list[dict[str, Any]]:
    """Every line of every finished (*.jsonl) file; fails on a partial or invalid line."""
    records = []
    for path in sorted(output_dir.rglob("*.jsonl")):
        data = path.read_bytes()
        assert not data or data.endswith(b"\n"), f"{path} ends with a partial line"
        for n, line in enumerate(data.splitlines(), 1):
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise AssertionError(f"{path}:{n}: not JSON: {line[:120]!r}") from exc
    return records


def polling(workers: Iterable[Worker]) -> list[Worker]:
    """The live workers that say they poll now (at most one, unless the election is changing hands)."""
    found = []
    for w in workers:
        try:
            if w.alive() and w.status()["poller"]["this_worker_polls"]:
                found.append(w)
        except (OSError, KeyError, TypeError):
            pass
    return found


def recent_hour(hours_ago: int = 1) -> str:
    """A whole UTC hour `hours_ago` before now: test data that no age filter drops, whatever the day."""
    return time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(time.time() - hours_ago * 3600))


def measurement(
    sensor_id: int,
    hour: str,
    value: float = 12.3,
    parameter: str = "pm25",
    unit: str = "µg/m³",
    location_id: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A raw measurement as the poller sends it."""
    loc = location_id if location_id is not None else sensor_id // 10
    m = {
        "location_id": loc,
        "sensor_id": sensor_id,
        "parameter": parameter,
        "parameter_id": {"pm25": 2, "pm10": 1, "o3": 10, "no2": 7, "so2": 9, "co": 8}.get(parameter),
        "value": value,
        "unit": unit,
        "datetime_utc": hour,
        "datetime_local": None,
        "location_name": f"Station {loc}",
        "country": "US",
        "latitude": 40.0 + (loc % 100) / 100,
        "longitude": -105.0 + (loc % 100) / 100,
        "timezone": "America/Denver",
        "provider": "AirNow",
        "fetched_at": hour,
    }
    m.update(extra)
    return m


def encode(m: dict[str, Any]) -> tuple[bytes, bytes]:
    return str(m["location_id"]).encode(), json.dumps(m).encode()
