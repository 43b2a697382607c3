"""The web token (`AIRQ_WEB_TOKEN`) on real workers: the endpoints, the peers, the dashboard's sign-in, start-up."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from airq_dev.harness import ROOT, VENV_BIN, Pipeline, encode, measurement, produce, recent_hour, wait_for

pytestmark = pytest.mark.integration
TOKEN = "it-web-token-6f1c2a9e0b7d4e38"


def test_with_a_token_every_endpoint_but_health_answers_401_without_it(kafka: str, tmp_path: Path) -> None:
    p = Pipeline(tmp_path, kafka, web_token=TOKEN)
    try:
        worker = p.worker().start()  # its readiness is read with the token (Worker.get sends it)
        code, body = worker.get("/airq/status", headers={})
        assert code == 401 and "web token required" in body["detail"]
        assert worker.get("/airq/status", headers={"Authorization": "Bearer not-the-token"})[0] == 401
        code, status = worker.get("/airq/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 200 and status["settings"]["web_token_set"] is True
        assert worker.get("/airq/status", headers={"X-API-Key": TOKEN})[0] == 200
        assert worker.get("/airq/health", headers={})[0] == 200
        for path in ("/airq/ready", "/metrics", "/airq/", "/airq/api/overview", "/airq/locations/1", "/"):
            assert worker.get(path, headers={})[0] == 401, path
        # The token is in no answer and no log line.
        assert TOKEN not in json.dumps(status) and TOKEN not in worker.get("/metrics")[1]
        worker.stop()
        assert TOKEN not in worker.log_text()
    finally:
        p.stop_all()


def test_a_worker_bound_beyond_loopback_without_a_token_exits_with_one_line_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRQ_", "OPENAQ_"))}
    proc = subprocess.run(
        [str(VENV_BIN / "faust"), "-A", "airq_app", "worker", "-l", "info"],
        cwd=ROOT,
        env={**env, "AIRQ_WEB_BIND": "0.0.0.0", "AIRQ_PIPELINE": str(ROOT / "pipeline.json")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    line = proc.stderr.strip()
    assert "\n" not in line and line.startswith("airq: configuration error: AIRQ_WEB_TOKEN: required"), line


def test_workers_with_a_token_forward_lookups_and_gather_the_overview_from_each_other(
    kafka: str, tmp_path: Path
) -> None:
    # No standby: each worker holds only its own partitions, so half the lookups go to the other worker.
    p = Pipeline(tmp_path, kafka, web_token=TOKEN, app__standby_replicas=0)
    try:
        workers = [p.worker(f"w{i}").start() for i in (1, 2)]
        wait_for(
            lambda: all(w.status()["assignment"]["active"] for w in workers), 60, what="partitions on both workers"
        )
        hour = recent_hour()
        locations = list(range(7000, 7040))
        produce(kafka, p.topic, [encode(measurement(loc * 10, hour, location_id=loc)) for loc in locations])
        wait_for(
            lambda: sum(w.status()["counters"]["consumed"] for w in workers) >= len(locations), 60, what="consumed"
        )

        def answered(w: Any) -> list[int]:
            return [loc for loc in locations if w.get(f"/airq/locations/{loc}")[0] == 200]

        for w in workers:
            wait_for(lambda w=w: answered(w) == locations, 30, what=f"every location answered by {w.name}")
        overview = workers[0].get("/airq/api/overview")[1]
        assert sorted(x["url"] for x in overview["workers"]) == sorted(w.url for w in workers)
        assert all(x["reachable"] for x in overview["workers"]), overview["workers"]
        assert {e["location_id"] for e in overview["locations"]} == set(locations)
    finally:
        p.stop_all()


def test_the_dashboard_signs_in_with_the_token_and_then_shows_the_locations(
    kafka: str, tmp_path: Path, browser: Any
) -> None:
    p = Pipeline(tmp_path, kafka, web_token=TOKEN)
    try:
        worker = p.worker().start()
        produce(kafka, p.topic, [encode(measurement(71_230, recent_hour(), location_id=7123))])
        wait_for(lambda: worker.get("/airq/locations/7123")[0] == 200, 30, what="the location")

        def shown() -> int:
            return browser.execute_script(
                "return document.querySelectorAll('#locations-table tbody tr[data-location-id]').length"
            )

        # Without a session: the sign-in page; a wrong token says so.
        browser.get(f"{worker.url}/airq/?interval_ms=500")
        browser.find_element("id", "token").send_keys("wrong-token")
        browser.find_element("css selector", "#login button").click()
        wait_for(lambda: browser.find_element("id", "login-error").is_displayed(), 10, what="the wrong-token message")
        # The right one opens the dashboard, which loads its data with the session cookie.
        field = browser.find_element("id", "token")
        field.clear()
        field.send_keys(TOKEN)
        browser.find_element("css selector", "#login button").click()
        wait_for(lambda: browser.find_elements("id", "locations-table") and shown() >= 1, 20, what="the dashboard")
        cookie = browser.get_cookie("airq_session")
        assert cookie is not None and cookie["httpOnly"] and TOKEN not in cookie["value"]

        # A link with the token in its fragment signs in at once, and the token leaves the address bar.
        browser.delete_all_cookies()
        browser.get("about:blank")
        browser.get(f"{worker.url}/airq/?interval_ms=500#token={TOKEN}")
        wait_for(lambda: browser.find_elements("id", "locations-table") and shown() >= 1, 20, what="the dashboard")
        assert TOKEN not in browser.current_url and browser.get_cookie("airq_session") is not None
        # So it does when the session is open already.
        browser.get("about:blank")
        browser.get(f"{worker.url}/airq/?interval_ms=500#token={TOKEN}")
        wait_for(lambda: browser.find_elements("id", "locations-table") and shown() >= 1, 20, what="the dashboard")
        assert TOKEN not in browser.current_url
    finally:
        p.stop_all()
