"""Faust internals airq replaces: the consumer's hand-over of a message to the streams (inline when it need not
wait, else raced as Faust does), a consumer stop that always ends, seeks in the consumer's thread, the bounded
RocksDB store, the quiet monitor and the changelog queue; and the checks that the installed faust-streaming,
aiokafka, mode-streaming and rocksdict are those the patches were written against."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.types import TP
from mode import Service

from airq_app.kafka import faust_internals
from airq_app.kafka.faust_internals import consumer, monitor, storage, tables
from airq_app.kafka.faust_internals.consumer import hand_over

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def _never(*args: Any) -> Any:
    raise AssertionError("wait_first must not be used for a hand-over that does not wait")


def test_a_hand_over_that_does_not_wait_runs_inline() -> None:
    delivered: list[str] = []

    async def callback(message: str) -> None:
        delivered.append(message)

    async def go() -> None:
        await hand_over(callback, "m1", asyncio.Event(), _never)

    asyncio.run(go())
    assert delivered == ["m1"]


def test_a_hand_over_that_waits_is_resumed_until_done() -> None:
    steps: list[str] = []

    async def callback(message: str) -> None:
        steps.append("before")
        await asyncio.sleep(0.01)  # a full buffer: waits for the stream
        await asyncio.sleep(0)
        steps.append(f"after {message}")

    async def go() -> None:
        service = Service()
        await hand_over(callback, "m2", asyncio.Event(), service.wait_first)

    asyncio.run(go())
    assert steps == ["before", "after m2"]


def test_a_waiting_hand_over_is_abandoned_when_the_flow_is_suspended() -> None:
    outcome: list[str] = []

    async def callback(message: str) -> None:
        try:
            await asyncio.sleep(30)
            outcome.append("delivered")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async def go() -> None:
        service = Service()
        suspend = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, suspend.set)
        await asyncio.wait_for(hand_over(callback, "m3", suspend, service.wait_first), 5)
        await asyncio.sleep(0)  # let the cancellation reach the callback

    asyncio.run(go())
    assert outcome == ["cancelled"]


def test_an_error_after_waiting_reaches_the_consumer() -> None:
    async def callback(message: str) -> None:
        await asyncio.sleep(0.01)
        raise ValueError(f"cannot decode {message}")

    async def go() -> None:
        service = Service()
        await hand_over(callback, "m4", asyncio.Event(), service.wait_first)

    with pytest.raises(ValueError, match="cannot decode m4"):
        asyncio.run(go())


def test_rocksdb_info_log_is_bounded(tmp_path) -> None:
    """RocksDB records its options in OPTIONS-*; the store's info LOG rotates and keeps only a few files."""
    options = storage.BoundedLogOptions(use_rocksdict=True)
    db = options.open(tmp_path / "db")
    db.put(b"k", b"v")
    db.close()
    recorded = "".join(p.read_text() for p in (tmp_path / "db").glob("OPTIONS-*"))
    assert f"max_log_file_size={storage.ROCKSDB_MAX_LOG_FILE_SIZE}" in recorded
    assert f"keep_log_file_num={storage.ROCKSDB_KEEP_LOG_FILE_NUM}" in recorded
    # And Faust resolves the store URL the app is configured with to this store.
    from faust.stores import by_url

    assert by_url(faust_internals.register_bounded_rocksdb()) is storage.BoundedLogStore


class _Closable:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def test_a_consumer_stop_that_does_not_finish_is_cut_short_and_its_connections_closed(monkeypatch: Any) -> None:
    """aiokafka's stop can wait for a join request as long as the group's rebalance timeout; the worker's stop
    must not (the consumer's thread is not a daemon: the process would not exit)."""
    from faust.transport.drivers import aiokafka as aiokafka_driver

    async def hangs(self: Any) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(aiokafka_driver.AIOKafkaConsumerThread, "on_thread_stop", hangs)
    thread = object.__new__(consumer.ConsumerThread)
    thread.stop_timeout_s = 0.2
    fetcher, client = _Closable(), _Closable()
    thread._consumer = types.SimpleNamespace(_fetcher=fetcher, _client=client)

    async def stop() -> float:
        started = time.monotonic()
        await asyncio.wait_for(thread.on_thread_stop(), 5.0)
        return time.monotonic() - started

    took = asyncio.run(stop())
    assert 0.2 <= took < 2.0
    assert fetcher.closed and client.closed


def test_the_app_monitors_nothing_per_message() -> None:
    """Faust's per-message and per-event statistics feed only its web pages, which airq turns off."""
    from airq_app.application import create_app
    from airq_app.settings import load_settings
    from airq_dev.harness import ROOT

    app = create_app(load_settings({"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}, dotenv=False))
    app_monitor = app.monitor
    assert isinstance(app_monitor, monitor.QuietMonitor)
    assert isinstance(app.tables, tables.TableManager)
    tp = TP("t", 0)
    assert app_monitor.on_stream_event_in(tp, 1, None, None) is None
    app_monitor.on_message_in(tp, 1, None)
    assert app_monitor.messages_received_total == 0 and app_monitor.events_total == 0


def test_a_partition_left_out_of_fetching_is_put_back() -> None:
    a, b, c = (TP("t", p) for p in range(3))

    class KafkaConsumer:
        _paused_partitions = {c}
        _buffered_partitions = {a}
        active = {b}

        def assignment(self) -> set:
            return {a, b, c}

        def _get_active_partitions(self) -> set:
            return self.active

    kafka_consumer = KafkaConsumer()
    assert faust_internals.resume_fetching(kafka_consumer, a)  # out since its buffer was full: back in
    assert kafka_consumer.active == {a, b} and kafka_consumer._buffered_partitions == set()
    assert not faust_internals.resume_fetching(kafka_consumer, b)  # fetched already
    assert not faust_internals.resume_fetching(kafka_consumer, c)  # paused on purpose (recovery): left alone
    assert not faust_internals.resume_fetching(kafka_consumer, TP("t", 9))  # not assigned
    assert kafka_consumer.active == {a, b}


def test_the_changelog_queue_is_emptied_by_a_revocation_not_by_each_resume() -> None:
    """A recovery resumes the flow several times; changelog records a standby fetched in between must stay queued
    (Faust's queue dropped them, leaving the replica without a record batch of its changelog)."""
    from airq_app.application import create_app
    from airq_app.settings import load_settings
    from airq_dev.harness import ROOT

    async def go() -> None:
        app = create_app(load_settings({"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}, dotenv=False))
        queue = app.tables.changelog_queue
        assert isinstance(queue, tables.ChangelogQueue)
        app.flow_control.resume()  # the recovery's first resume, then records arrive
        queue.put_nowait("record 5060")
        app.flow_control.resume()  # the standbys resumed, then the streams: both resume the flow again
        app.flow_control.resume()
        assert queue.qsize() == 1
        app.flow_control.suspend()  # a revocation: suspend, then clear every queue
        app.flow_control.clear()
        assert queue.qsize() == 0
        stream_queue = app.FlowControlQueue(maxsize=10, clear_on_resume=True)  # other queues keep Faust's way
        app.flow_control.resume()
        stream_queue.put_nowait(1)
        app.flow_control.resume()
        assert stream_queue.qsize() == 0

    asyncio.run(go())


class _AioConsumer:
    """aiokafka's consumer as far as a seek goes: records the thread each seek ran in."""

    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = assigned
        self.seeks: list[tuple[str, TP, int]] = []
        self.done = threading.Event()

    def seek(self, tp: TP, offset: int) -> None:
        if tp not in self.assigned:
            self.done.set()
            raise IllegalStateError(f"No current assignment for partition {tp}")
        self.seeks.append((threading.current_thread().name, tp, offset))
        self.done.set()


def test_a_seek_from_the_event_loop_runs_in_the_consumer_thread() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="consumer-thread", daemon=True)
    thread.start()
    try:
        consumer_thread = consumer.ConsumerThread.__new__(consumer.ConsumerThread)
        consumer_thread.thread_loop = loop
        aio = consumer_thread._consumer = _AioConsumer({TP("t", 0)})
        consumer_thread.seek(TP("t", 0), 609)  # Faust's synchronous seek, called from this (the worker's) thread
        assert aio.done.wait(5)
        assert aio.seeks == [("consumer-thread", TP("t", 0), 609)]
        aio.done.clear()
        consumer_thread.seek(TP("t", 2), 1)  # revoked meanwhile: logged in the thread, nothing raised anywhere
        assert aio.done.wait(5) and len(aio.seeks) == 1
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


# -- The versions and the upstream code the patches were written against --------------------------------------------


@pytest.mark.parametrize("distribution", sorted(faust_internals.PINNED_VERSIONS))
def test_the_installed_version_is_the_one_the_patches_were_written_against(distribution: str) -> None:
    pinned = faust_internals.PINNED_VERSIONS[distribution]
    installed = faust_internals.installed_version(distribution)
    modules = ", ".join(f"airq_app/kafka/faust_internals/{m}.py" for m in faust_internals.RELIED_ON_BY[distribution])
    assert installed == pinned, (
        f"{distribution} {installed} is installed, the patches were written against {pinned}: re-read {modules} "
        f"(each module's docstring lists the internals it uses) before moving the pin"
    )


def test_the_pinned_versions_are_those_the_project_installs() -> None:
    constraints = dict(re.findall(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text()))
    setup = dict(re.findall(r"(?m)^\s+([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "setup.cfg").read_text()))
    for distribution, pinned in faust_internals.PINNED_VERSIONS.items():
        assert constraints.get(distribution) == pinned, f"constraints.txt pins {distribution} otherwise"
        assert setup.get(distribution, pinned) == pinned, f"setup.cfg pins {distribution} otherwise"
