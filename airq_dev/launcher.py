"""`make run`: the local broker (unless AIRQ_BROKER is set), the simulator (unless OPENAQ_API_KEY is set) and
one worker in the foreground. Ctrl-C (or SIGTERM) stops the worker first, so it finishes its files, then
everything else this launcher started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dotenv import load_dotenv

from airq_app.settings import ConfigError, load_settings
from airq_dev import local_kafka

ROOT = Path(__file__).resolve().parent.parent


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except Exception as exc:  # any HTTP answer, even 401, means it listens
            if getattr(exc, "code", None):
                return True
            time.sleep(0.3)
    return False


def _stop(proc: subprocess.Popen[bytes] | None, name: str, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"airq: {name} did not stop in {timeout:.0f} s, killing it", flush=True)
        proc.kill()
        proc.wait()


def run() -> int:
    load_dotenv(ROOT / ".env", override=False)
    try:
        settings = load_settings(dotenv=False)
    except ConfigError as exc:
        print(f"airq: configuration error: {exc}", file=sys.stderr)
        return 2
    if not _port_free(settings.web.port):
        print(
            f"airq: web port {settings.web.port} is in use: stop the other worker or set AIRQ_WEB_PORT",
            file=sys.stderr,
        )
        return 2

    env = dict(os.environ)
    started_broker = False
    simulator: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell starting `make run` in the background leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        if local_kafka.configured_broker():
            print(f"airq: using the broker at {settings.kafka.broker}", flush=True)
        else:
            started_broker = not local_kafka.answers_metadata(local_kafka.LocalBroker().bootstrap, 2.0)
            local_kafka.start()

        if settings.openaq.using_simulator and not settings.from_environment("openaq.base_url"):
            port = settings.simulator.port
            if not _port_free(port):
                print(
                    f"airq: simulator port {port} is in use: stop what runs there or change simulator.port "
                    f"in {settings.app.pipeline}",
                    file=sys.stderr,
                )
                return 2
            simulator = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "airq_dev.simulator",
                    "--port",
                    str(port),
                    "--locations",
                    str(settings.simulator.locations),
                    "--seed",
                    str(settings.simulator.seed),
                ],
                start_new_session=True,
            )
            if not _wait_http(f"http://127.0.0.1:{port}/v3/locations?limit=1", 30):
                print("airq: the OpenAQ simulator did not start", file=sys.stderr)
                return 1
            print(
                f"airq: no OPENAQ_API_KEY set: polling the OpenAQ simulator at http://127.0.0.1:{port} "
                f"({settings.simulator.locations} simulated locations)",
                flush=True,
            )
        elif settings.openaq.using_simulator:
            print(f"airq: no OPENAQ_API_KEY set: polling {settings.openaq.base_url} without a key", flush=True)
        else:
            print(f"airq: polling {settings.openaq.base_url} with the key from OPENAQ_API_KEY", flush=True)

        print(
            f"airq: output in {settings.output.directory.resolve()}, status at "
            f"http://127.0.0.1:{settings.web.port}/airq/status  (Ctrl-C stops everything)",
            flush=True,
        )
        if settings.web.token:
            print(
                "airq: every endpoint but /airq/health wants AIRQ_WEB_TOKEN (Authorization: Bearer or X-API-Key); "
                f"the dashboard at http://127.0.0.1:{settings.web.port}/airq/ asks for it once",
                flush=True,
            )
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("faust")), "-A", "airq_app", "worker", "-l", "info"],
            env=env,
            start_new_session=True,
        )
        return worker.wait()
    except KeyboardInterrupt:
        stopping = True
        return 0
    except local_kafka.BrokerError as exc:
        print(f"airq: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if stopping:
            print("\nairq: stopping...", flush=True)
        _stop(worker, "worker", timeout=60)
        _stop(simulator, "simulator")
        if started_broker:
            local_kafka.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] != ["run"]:
        print("usage: python -m airq_dev.launcher run", file=sys.stderr)
        return 2
    return run()


if __name__ == "__main__":
    sys.exit(main())
