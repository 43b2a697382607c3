"""The dashboard at /airq/ in headless Chromium, fed by a worker polling the simulator over the real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airq_app.domain.aqi import category_color
from airq_dev.harness import ROOT, Pipeline, encode, http_get, measurement, produce, wait_for
from airq_dev.simulator import Faults, SimulatorThread, WorldConfig

pytestmark = pytest.mark.integration
ARTIFACTS = ROOT / "tests" / "artifacts"
ROWS_JS = """
  return [...document.querySelectorAll('#locations-table tbody tr[data-location-id]')].map(tr => ({
    id: Number(tr.dataset.locationId), aqi: tr.querySelector('td.aqi').innerText.trim(),
    category: tr.children[3].innerText.trim(), params: tr.querySelectorAll('[data-parameter]').length}));
"""
MARKERS_JS = """
  return Object.fromEntries([...document.querySelectorAll('#map circle[data-location-id]')]
    .map(c => [c.dataset.locationId, c.getAttribute('fill')]));
"""


def rows(driver: Any) -> list[dict[str, Any]]:
    """What the table shows: location id, AQI badge text, category and parameter count, in display order."""
    return driver.execute_script(ROWS_JS)


def markers(driver: Any) -> dict[int, str]:
    """The map's markers: location id -> fill colour."""
    return {int(k): v for k, v in driver.execute_script(MARKERS_JS).items()}


def snapshot(driver: Any) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """Table and map read in one script, so both come from the same refresh."""
    both = driver.execute_script(
        f"const rows = (() => {{{ROWS_JS}}})(); const markers = (() => {{{MARKERS_JS}}})(); return [rows, markers];"
    )
    return both[0], {int(k): v for k, v in both[1].items()}


def overview(url: str) -> dict[str, Any]:
    code, body = http_get(f"{url}/airq/api/overview")
    assert code == 200, body
    return json.loads(body)


def test_dashboard_shows_locations_workers_and_updates(kafka: str, tmp_path: Path, browser: Any) -> None:
    sim = SimulatorThread(WorldConfig(locations=30, seed=11, rate_limit_per_minute=600, faults=Faults())).start()
    p = Pipeline(tmp_path, kafka, output__rotate_max_age_s=1)
    try:
        worker = p.worker(role="all", OPENAQ_BASE_URL=sim.url, OPENAQ_API_KEY="dashboard-key", AIRQ_POLL_INTERVAL="5")
        worker.start()
        wait_for(lambda: len(overview(worker.url)["locations"]) >= 5, 120, what="locations in the table")

        browser.get(f"{worker.url}/airq/?interval_ms=1000")
        wait_for(lambda: len(rows(browser)) >= 5, 30, what="rows rendered")
        wait_for(lambda: browser.execute_script("return !!document.querySelector('#land path')"), 10, what="map")

        # The numbers on the page are the pipeline's: every row's AQI, category and parameters, and a marker for
        # every located location, as the API has them (compared when both hold still: they change while polling).
        def consistent() -> tuple[dict[int, Any], list[dict[str, Any]], dict[int, str]] | None:
            """(api, rows, markers) when the page shows exactly what the API answered before and after it."""
            before = overview(worker.url)["locations"]
            shown, dots = snapshot(browser)
            if overview(worker.url)["locations"] != before:
                return None  # the pipeline moved on meanwhile: compare again
            api = {e["location_id"]: e for e in before}
            if sorted(r["id"] for r in shown) != sorted(api):
                return None
            for r in shown:
                entry = api[r["id"]]
                if (
                    r["aqi"] != (str(entry["aqi"]) if entry["aqi"] is not None else "–")
                    or r["category"] != (entry["aqi_category"] or "no AQI")
                    or r["params"] != len(entry["parameters"])
                ):
                    return None
            located = {i for i, e in api.items() if e["location"].get("latitude") is not None}
            return (api, shown, dots) if located == set(dots) else None

        api, shown, dots = wait_for(consistent, 60, what="the page to show what the API has")
        # Sorted by AQI, highest first, by default; a click on the header reverses it.
        aqis = [int(r["aqi"]) if r["aqi"] != "–" else -1 for r in shown]
        assert aqis == sorted(aqis, reverse=True)
        browser.find_element("css selector", "#locations-table th[data-sort=aqi]").click()
        aqis_up = [int(r["aqi"]) if r["aqi"] != "–" else -1 for r in rows(browser)]
        assert aqis_up == sorted(aqis_up) and len(aqis_up) >= 5
        browser.find_element("css selector", "#locations-table th[data-sort=aqi]").click()

        # Every marker is in its location's EPA colour.
        assert dots
        for i, fill in dots.items():
            if api[i]["aqi_category"]:
                assert fill.lower() == category_color(api[i]["aqi_category"]).lower(), (i, api[i], fill)

        # The workers panel: this worker, ready, with what it has written (read in one script: rows are redrawn).
        def worker_row() -> dict[str, str] | None:
            return browser.execute_script(
                """const tr = document.querySelector(`#workers [data-worker-url='${arguments[0]}']`);
                   return tr && {text: tr.innerText, written: tr.querySelector('td.written')?.innerText || ''};""",
                worker.url,
            )

        def written() -> int:
            digits = ((worker_row() or {}).get("written") or "").replace(",", "")
            return int(digits) if digits.isdigit() else 0

        wait_for(lambda: written() > 0, 30, what="written records in the workers panel")
        assert "ready" in (worker_row() or {}).get("text", "")

        # Live: a new, very polluted location reaches the page without a reload.
        hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
        smoke = measurement(9_876_540, hour, value=420.0, location_id=987_654, location_name="Smoke Test Ridge")
        smoke.update(latitude=-33.9, longitude=151.2, country="AU")
        produce(kafka, p.topic, [encode(smoke)])
        first_updated = browser.find_element("id", "updated-at").text
        wait_for(lambda: any(r["id"] == 987_654 for r in rows(browser)), 60, what="the new location on the page")
        entry = next(e for e in overview(worker.url)["locations"] if e["location_id"] == 987_654)
        row = next(r for r in rows(browser) if r["id"] == 987_654)
        assert entry["aqi"] is not None and row["aqi"] == str(entry["aqi"]) and row["category"] == entry["aqi_category"]
        assert rows(browser)[0]["id"] == 987_654 or int(rows(browser)[0]["aqi"]) >= entry["aqi"]
        assert markers(browser)[987_654].lower() == category_color(entry["aqi_category"]).lower()
        assert browser.find_element("id", "updated-at").text != first_updated
        assert not browser.find_element("id", "error").is_displayed()

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "dashboard.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000

        check_local_index_mode(browser, worker.url, kafka, p.topic)

        # A worker that goes away: the page says so and keeps the last numbers.
        worker.stop()
        wait_for(lambda: browser.find_element("id", "error").is_displayed(), 15, what="the error banner")
        assert len(rows(browser)) >= 5
    finally:
        p.stop_all()
        sim.stop()


LOCAL_ROWS_JS = """
  return [...document.querySelectorAll('#locations-table tbody tr[data-location-id]')].map(tr => ({
    id: Number(tr.dataset.locationId), index: tr.dataset.index, value: tr.querySelector('td.aqi').innerText.trim(),
    badge: getComputedStyle(tr.querySelector('td.aqi .badge')).backgroundColor,
    category: tr.querySelector('td.category .cat').innerText.trim()}));
"""


def rgb(hex_colour: str) -> str:
    """`#92d051` as the browser reports a computed colour: `rgb(146, 208, 81)`."""
    h = hex_colour.lstrip("#")
    return f"rgb({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)})"


def check_local_index_mode(browser: Any, url: str, kafka: str, topic: str) -> None:
    """Switch to the local index: markers, badges and categories come from each location's national index."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [(now - timedelta(hours=h)).strftime("%Y-%m-%dT%H:%M:%SZ") for h in range(23, -1, -1)]
    # Delhi: 24 hours of PM2.5 at 50 and 60 µg/m³ → India's index from the 24-hour mean 55, 92 "Satisfactory".
    delhi = [
        measurement(9_876_550, h, value=50.0 + 10 * (i % 2), location_id=987_655, location_name="Delhi Test")
        for i, h in enumerate(hours)
    ]
    # Lyon: one hour of 55 µg/m³ → the European index (hourly), "Poor".
    lyon = measurement(9_876_560, hours[-1], value=55.0, location_id=987_656, location_name="Lyon Test", country="FR")
    for m in delhi:
        m.update(latitude=28.6, longitude=77.2, country="IN")
    lyon.update(latitude=45.76, longitude=4.84)
    produce(kafka, topic, [encode(m) for m in [*delhi, lyon]])

    def entries() -> dict[int, dict[str, Any]] | None:
        got = {e["location_id"]: e for e in overview(url)["locations"]}
        ok = all((got.get(i) or {}).get("local_index") for i in (987_655, 987_656))
        return got if ok and got[987_655]["parameters"]["pm25"]["datetime_utc"] == hours[-1] else None

    api = wait_for(entries, 60, what="the test locations' local index in the overview")
    delhi_index, lyon_index = api[987_655]["local_index"], api[987_656]["local_index"]
    assert (delhi_index["index"], delhi_index["value"], delhi_index["category"]) == ("IN", 92, "Satisfactory")
    assert (lyon_index["index"], lyon_index["category"]) == ("EU:new", "Poor")

    browser.find_element("id", "mode-local").click()
    assert browser.find_element("id", "mode-local").get_attribute("aria-pressed") == "true"
    assert "index=local" in browser.current_url
    assert "with a local index" in browser.find_element("id", "summary").text
    assert browser.find_element("css selector", "#locations-table th[data-sort=aqi]").text.startswith("Local index")

    def shown() -> tuple[dict[int, Any], dict[int, str]] | None:
        table = {r["id"]: r for r in browser.execute_script(LOCAL_ROWS_JS)}
        dots = markers(browser)
        return (table, dots) if {987_655, 987_656} <= set(table) and {987_655, 987_656} <= set(dots) else None

    table, dots = wait_for(shown, 30, what="the test locations in local-index mode")
    for location_id, index in ((987_655, delhi_index), (987_656, lyon_index)):
        assert dots[location_id].lower() == index["color"].lower(), (location_id, index, dots[location_id])
        row = table[location_id]
        assert row["category"] == index["category"] and row["value"] == str(index["value"]), (row, index)
        assert row["index"] == index["index"] and row["badge"] == rgb(index["color"])
    # India's colour is not the EPA colour of the same air: the map really switched scales.
    assert dots[987_655].lower() != category_color(api[987_655]["aqi_category"]).lower()
    # The legend names each index on the map with its own categories.
    legend = browser.execute_script(
        "return [...document.querySelectorAll('#legend .legend-index')].map(d => [d.dataset.index, d.innerText]);"
    )
    by_index = dict(legend)
    assert "Satisfactory" in by_index["IN"] and "Severe" in by_index["IN"]
    assert "Poor" in by_index["EU:new"] and "Extremely Poor" in by_index["EU:new"]

    shot = ARTIFACTS / "dashboard-local-index.png"
    browser.set_window_size(1400, 1500)  # map, legend and the first rows of the table
    try:
        wait_for(lambda: shown() is not None, 10, what="the page redrawn at the new size")
        browser.save_screenshot(str(shot))
    finally:
        browser.set_window_size(1400, 1000)
    assert shot.stat().st_size > 10_000

    browser.find_element("id", "mode-aqi").click()
    wait_for(
        lambda: markers(browser).get(987_655, "").lower() == category_color(api[987_655]["aqi_category"]).lower(),
        10,
        what="US AQI colours back",
    )
