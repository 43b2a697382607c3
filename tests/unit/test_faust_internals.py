"""Faust internals airq replaces: the consumer's hand-over of a message to the streams (inline when it need not
wait, else raced as Faust does), a consumer stop that always ends, seeks in the consumer's thread, the bounded
RocksDB store, the quiet monitor and the changelog queue; and the checks that the installed faust-streaming,
aiokafka, mode-streaming and rocksdict are those the patches were written against."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import re
import threading
import time
import types
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import IllegalStateError
from faust.tables import TableManager
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
        assert isinstance(app.tables, TableManager)
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
        f"(each module's docstring lists the internals it uses) and FINGERPRINTS in this test before moving the pin"
    )


def test_the_pinned_versions_are_those_the_project_installs() -> None:
    constraints = dict(re.findall(r"(?m)^([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "constraints.txt").read_text()))
    setup = dict(re.findall(r"(?m)^\s+([A-Za-z0-9_.-]+)==(\S+)$", (ROOT / "setup.cfg").read_text()))
    for distribution, pinned in faust_internals.PINNED_VERSIONS.items():
        assert constraints.get(distribution) == pinned, f"constraints.txt pins {distribution} otherwise"
        assert setup.get(distribution, pinned) == pinned, f"setup.cfg pins {distribution} otherwise"


#: Every upstream object a patch overrides, copies or relies on, by module: its name, the fingerprint of its source
#: at `PINNED_VERSIONS` (the first 16 hex digits of the SHA-256 of `inspect.getsource`), and the patch to re-read
#: when it changes (`module:name`; a module without a dot is one of airq_app/kafka/faust_internals/).
FINGERPRINTS: dict[str, list[tuple[str, str, str]]] = {
    "faust.transport.consumer": [
        ("Consumer._drain_messages", "44a2500309e83c63", "consumer:Consumer._drain_messages"),
        ("ThreadDelegateConsumer._seek", "4f95c631420410a5", "consumer:Consumer._seek"),
        ("Consumer._get_active_partitions", "b24897f3c7afdb5d", "consumer:resume_fetching"),
        ("Consumer.on_buffer_full", "c8961679e0bcdce5", "consumer:resume_fetching"),
        ("Consumer.on_buffer_drop", "4b57e8a418d5ad9c", "consumer:resume_fetching"),
    ],
    "mode.services": [
        ("Service.wait_first", "feade6a31f8a6789", "consumer:hand_over"),
    ],
    "faust.transport.drivers.aiokafka": [
        ("Consumer._new_consumer_thread", "0870ec53dea75083", "consumer:Consumer._new_consumer_thread"),
        ("AIOKafkaConsumerThread.seek", "1498560d05f02582", "consumer:ConsumerThread.seek"),
        ("AIOKafkaConsumerThread.on_thread_stop", "8dfc004e258b6c25", "consumer:ConsumerThread.on_thread_stop"),
        ("AIOKafkaConsumerThread._commit", "932852ce7a23f658", "consumer:commit_offsets"),
        ("AIOKafkaConsumerThread._ensure_consumer", "ff4a4c693b7ec63f", "consumer:commit_offsets"),
        ("Producer._settings_extra", "a4c7bc41b6382223", "producer:Producer._settings_extra"),
        ("Producer.on_start", "219c9a7a785d77b2", "producer:Producer.on_start"),
        ("Producer.flush", "36d0cb3615f65b01", "producer:Producer.flush"),
        ("Producer.on_stop", "86799c5ab7b662f7", "producer:Producer.on_stop"),
        ("Producer.create_topic", "d2d406c4b9a44be7", "producer:Producer.create_topic"),
    ],
    "aiokafka.consumer.consumer": [
        ("AIOKafkaConsumer.seek", "a9430f1f3b9ac419", "consumer:ConsumerThread.seek"),
        ("AIOKafkaConsumer.stop", "bc5da9c98595299a", "consumer:ConsumerThread.on_thread_stop"),
    ],
    "aiokafka.consumer.fetcher": [
        ("Fetcher.seek_to", "f0ba6aba6c22ef83", "consumer:ConsumerThread.seek"),
    ],
    "mode.threads": [
        ("QueueServiceThread.call_thread", "479edda75b54734b", "consumer:commit_offsets"),
    ],
    "faust.transport.producer": [
        ("ProducerBuffer.wait_until_ebb", "758dd5744044071b", "producer:set_producer_buffer_limit"),
        ("ProducerBuffer._send_pending", "4a9d5f932b56bc68", "producer:RetryingProducerBuffer._send_pending"),
        ("ProducerBuffer._handle_pending", "78d648030fd21016", "producer:RetryingProducerBuffer._send_pending"),
        ("Producer.__init__", "5c53a4b47aa1372b", "producer:Producer.__init__"),
    ],
    "aiokafka.producer.message_accumulator": [
        ("MessageAccumulator.__init__", "eb57f3c1d5c7657b", "producer:Producer.undelivered"),
        ("MessageAccumulator._append_batch", "4762abfc42cbaa15", "producer:Producer.on_start"),
        ("MessageAccumulator.drain_by_nodes", "fc995afbfc5718e2", "producer:Producer.on_start"),
        ("MessageBatch.expired", "3b28f15f56f2acb1", "producer:Producer.on_start"),
    ],
    "aiokafka.producer.sender": [
        ("Sender.sender_task", "2aa81bcdcedb2d20", "producer:Producer.abandon"),
    ],
    "aiokafka.producer.producer": [
        ("AIOKafkaProducer.stop", "43ef97147111893b", "producer:Producer.abandon"),
    ],
    "faust.assignor.leader_assignor": [
        ("LeaderAssignor", "c3f79f79c3ef88d6", "producer:leader_topic_name"),
    ],
    "faust.transport.base": [
        ("Transport.create_consumer", "46cc2bf5ab14acfa", "airq_app.kafka.faust_internals:Transport"),
        ("Transport.create_producer", "2de47ba78c944b4a", "airq_app.kafka.faust_internals:Transport"),
    ],
    "faust.app.base": [
        ("App._new_transport", "42db531312dd776f", "airq_app.application:AirqApp._new_transport"),
        ("App._on_partitions_revoked", "d5c895bbe57dc73a", "tables:ChangelogQueue"),
    ],
    "faust.tables.base": [
        ("Collection._verify_source_topic_partitions", "6814da56b0d83f93", "storage:verify_writable"),
        ("Collection.send_changelog", "3dd3884e1b5fc0e1", "storage:send_changelog_for"),
        ("Collection.data", "ade4a02ddd5582cb", "storage:store_get"),
    ],
    "faust.stores.rocksdb": [
        ("Store._db_for_partition", "cb7e67d5f9efc4bc", "storage:read_raw"),
        ("Store.persisted_offset", "6f2e502fb86043a1", "storage:persisted_offset"),
        ("Store.set_persisted_offset", "b4c811926678346e", "storage:StoreBatch"),
        ("Store.apply_changelog_batch", "ea3344d369fc4ab5", "storage:StoreBatch"),
        ("RocksDBOptions.open", "ff87e92d69e2f487", "storage:StoreBatch"),
        ("RocksDBOptions.as_options", "d2a1bea17736d2eb", "storage:BoundedLogOptions.as_options"),
        ("Store.__init__", "c7c0fa2989e8ab4a", "storage:BoundedLogStore.__init__"),
    ],
    "faust.tables.manager": [
        ("TableManager.on_start", "365dd25fbc0e0684", "tables:TableManager.on_start"),
        ("TableManager.changelog_queue", "9c7f4cac57ef1706", "tables:TableManager.changelog_queue"),
    ],
    "mode.utils.queues": [
        ("ThrowableQueue.clear", "d18f09e451acf62e", "tables:ChangelogQueue.clear"),
        ("FlowControlEvent.resume", "4dcdc1253fd0dcb4", "tables:ChangelogQueue"),
        ("FlowControlEvent.clear", "dda5e40d80288a8f", "tables:ChangelogQueue"),
    ],
    "faust.tables.recovery": [
        ("Recovery._restart_recovery", "6bd8a8558a2dffe4", "tables:ChangelogQueue"),
    ],
    "faust.sensors.monitor": [
        ("Monitor.on_message_in", "b2a9a9045b2f456c", "monitor:QuietMonitor"),
        ("Monitor.on_stream_event_in", "df6d2e5f6397ce44", "monitor:QuietMonitor"),
        ("Monitor.on_stream_event_out", "2d2277a6dbda754c", "monitor:QuietMonitor"),
        ("Monitor.on_message_out", "7c4054247cde96c3", "monitor:QuietMonitor"),
    ],
}


def _upstream(module: str, name: str) -> Any:
    """The function or class whose source is fingerprinted: a property's getter, a task's coroutine function."""
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = inspect.getattr_static(obj, part)
    while not (inspect.isfunction(obj) or inspect.isclass(obj)):
        obj = next(getattr(obj, attribute) for attribute in ("fget", "__func__", "fun") if hasattr(obj, attribute))
    return obj


def _patch_file(ref: str) -> str:
    """The file of a patch named `module:name` in `FINGERPRINTS`, once it is checked to be there."""
    module_name, _, name = ref.partition(":")
    if "." not in module_name:
        module_name = f"airq_app.kafka.faust_internals.{module_name}"
    module = obj = importlib.import_module(module_name)
    for part in name.split("."):
        assert hasattr(obj, part), f"FINGERPRINTS names {ref}, which is not there any more"
        obj = getattr(obj, part)
    return str(Path(inspect.getfile(module)).relative_to(ROOT))


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("module", "name", "recorded", "patch"),
    [(module, *row) for module, rows in FINGERPRINTS.items() for row in rows],
    ids=[f"{module}:{row[0]}" for module, rows in FINGERPRINTS.items() for row in rows],
)
def test_the_upstream_code_each_patch_relies_on_is_unchanged(module: str, name: str, recorded: str, patch: str) -> None:
    reread = f"re-read {patch.partition(':')[2]} in {_patch_file(patch)} against the new code"
    try:
        current = fingerprint(_upstream(module, name))
    except (ImportError, AttributeError, OSError, TypeError) as exc:
        pytest.fail(f"{module}:{name} is not there any more ({exc!r}): {reread}")
    assert current == recorded, (
        f"{module}:{name} changed (fingerprint {current}, recorded {recorded}): {reread}, "
        f"then record the new fingerprint in FINGERPRINTS"
    )
