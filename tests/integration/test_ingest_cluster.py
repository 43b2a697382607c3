"""The poller on a 3-node KRaft cluster while Kafka refuses its measurements for a minute.

The measurements topic is made to need three in-sync replicas and one broker is SIGKILLed: every produce to it
fails with NOT_ENOUGH_REPLICAS (retried by the producer) for 60 s while the world's clock runs on. Nothing the
poller was served may be lost: its progress moves only on Kafka's acknowledgement, so every hour comes out once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from airq_dev.harness import Pipeline, wait_for
from airq_dev.kafka_cluster import Cluster
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig
from tests.integration.test_ingest_complete import KEY, check_complete, drained, ingest
from tests.integration.test_kafka_cluster import cluster  # noqa: F401  (the module-scoped 3-node cluster)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REFUSED_S = 60.0


def set_min_insync(bootstrap: str, topic: str, value: int) -> None:
    async def go() -> Any:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
        await admin.start()
        try:
            resource = ConfigResource(ConfigResourceType.TOPIC, topic, {"min.insync.replicas": str(value)})
            return await admin.alter_configs([resource])
        finally:
            await admin.close()

    asyncio.run(go())


def test_a_minute_of_refused_produce_loses_no_polled_hour(cluster: Cluster, tmp_path: Path) -> None:  # noqa: F811
    sim = SimulatorThread(
        WorldConfig(
            locations=150,
            seed=24,
            rate_limit_per_minute=0,
            time_offset_s=-8 * 3600,
            batch_fraction=0.2,
            faults=Faults(),
        )
    ).start()
    try:
        p = Pipeline(
            tmp_path,
            cluster.bootstrap,
            app__session_timeout_s=6,
            output__rotate_max_age_s=2,
            openaq__requests_per_minute=600,
            openaq__requests_per_hour=36000,
            openaq__gap_retry_minutes=0.05,
        )
        env = {"OPENAQ_BASE_URL": sim.url, "OPENAQ_API_KEY": KEY, "AIRQ_POLL_INTERVAL": "3"}
        poller = p.worker("ingest", role="ingest", **env).start()
        processor = p.worker("process", role="process").start()
        wait_for(lambda: poller.status()["counters"]["poll_cycles"] >= 2, 60, what="two poll cycles")

        set_min_insync(cluster.bootstrap, p.topic, 3)
        cluster.kill(3)
        refused_at = time.monotonic()
        stop = threading.Event()

        def clock() -> None:  # four new hours while nothing reaches the topic
            for _ in range(4):
                if stop.wait(REFUSED_S / 5):
                    return
                sim.advance(1)

        ticker = threading.Thread(target=clock, daemon=True)
        ticker.start()
        try:
            wait_for(
                lambda: ingest(poller)["unacknowledged_messages"] > 0 or ingest(poller)["open_sensor_hours"] > 0,
                REFUSED_S,
                what="sends Kafka does not acknowledge",
            )
            during = ingest(poller)
            time.sleep(max(0.0, REFUSED_S - (time.monotonic() - refused_at)))
        finally:
            ticker.join()
        cluster.restart(3)
        set_min_insync(cluster.bootstrap, p.topic, 2)
        wait_for(lambda: drained(poller), 180, interval=1, what="no missing sensor-hour")
        cycles = poller.status()["counters"]["poll_cycles"]
        wait_for(lambda: poller.status()["counters"]["poll_cycles"] >= cycles + 2, 60, what="two more cycles")
        figures = check_complete(p, cluster.bootstrap, sim)
        print(
            f"\nrefused produce for {REFUSED_S:.0f} s: while refused {during['unacknowledged_messages']} messages "
            f"unacknowledged and {during['open_sensor_hours']} sensor-hours missing; afterwards {figures}"
        )
        assert poller.stop() == 0 and processor.stop() == 0
    finally:
        sim.stop()
