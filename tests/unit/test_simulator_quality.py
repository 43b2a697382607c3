"""The simulator's data-quality faults: stuck sensors, spikes, PM2.5 above PM10 and flagged periods, as generated."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from airq_dev.simulator import HOUR, World, WorldConfig, config_from_args
from airq_dev.simulator.model import Sensor, utc_str
from airq_dev.simulator.quality import CYCLE_HOURS, FLAG_TYPES
from airq_dev.simulator.runner import build_parser

pytestmark = pytest.mark.unit

NOW = datetime(2025, 6, 1, 12, 30, tzinfo=UTC).timestamp()
NOW_HOUR = int(NOW // HOUR)
WINDOW = range(NOW_HOUR - 3 * CYCLE_HOURS + 1, NOW_HOUR + 1)  # three whole cycles' worth of hours


def world(**options: Any) -> World:
    options.setdefault("locations", 120)
    options.setdefault("seed", 5)
    return World(WorldConfig(clock=lambda: NOW, inactive_fraction=0, **options))


def expected_values(w: World) -> dict[tuple[int, str], float]:
    """(sensor id, hour) -> value for every faulty sensor-hour `/_sim/quality` lists in WINDOW."""
    report = w.quality.report(WINDOW[0], WINDOW[-1], w.locations)
    out = {(r["sensor_id"], h): r["value"] for r in report["stuck"] for h in r["hours"]}
    out |= {(r["sensor_id"], r["datetime"]): r["value"] for r in report["spikes"]}
    for r in report["pm25_gt_pm10"]:
        out[(r["pm25_sensor_id"], r["datetime"])] = r["pm25"]
    return out


def test_quality_faults_are_off_by_default_and_every_value_stays_clean() -> None:
    w = world()
    assert not w.quality.enabled
    sensors = list(w.sensors.values())
    assert all(w.published_value(s, h) == w.clean_value(s, h) for s in sensors for h in WINDOW[-24:])
    assert not any(w.hour_row_json(s, h, "1hour")["flagInfo"]["hasFlags"] for s in sensors[:40] for h in WINDOW[-24:])
    report = w.quality.report(WINDOW[0], WINDOW[-1], w.locations)
    assert [report[k] for k in ("stuck", "spikes", "pm25_gt_pm10", "flags", "stuck_sensors")] == [[]] * 5
    assert all(w.quality.flags(loc) == [] for loc in w.locations)


def test_the_same_seed_injects_the_same_faults_and_another_seed_others() -> None:
    options = {"stuck_rate": 0.3, "spike_rate": 0.05, "pm25_gt_pm10_rate": 0.5, "flag_rate": 0.5}
    a, b, c = world(locations=60, **options), world(locations=60, **options), world(locations=60, seed=6, **options)
    report_a = a.quality.report(WINDOW[0], WINDOW[-1], a.locations)
    assert report_a == b.quality.report(WINDOW[0], WINDOW[-1], b.locations)
    assert report_a != c.quality.report(WINDOW[0], WINDOW[-1], c.locations)
    assert all(len(report_a[k]) > 0 for k in ("stuck", "spikes", "pm25_gt_pm10", "flags"))


def test_each_mode_hits_its_share_within_tolerance() -> None:
    w = world(locations=600, stuck_rate=0.2, spike_rate=0.05, pm25_gt_pm10_rate=0.3, flag_rate=0.25)
    q = w.quality
    sensors = list(w.sensors.values())
    assert abs(sum(map(q.is_stuck_sensor, sensors)) / len(sensors) - 0.2) < 0.04
    hours = WINDOW[-48:]
    spikes = sum(q.is_spike(s, h) for s in sensors for h in hours)
    # a spike next to a stuck or inverted hour is left out, so a little below the rate
    assert 0.04 < spikes / (len(sensors) * len(hours)) <= 0.051
    eligible = [w.by_location[i] for i in q.pairs]
    assert len(eligible) > 200
    assert abs(sum(map(q.is_inverting_location, eligible)) / len(eligible) - 0.3) < 0.06
    assert abs(sum(map(q.is_flagged_location, w.locations)) / len(w.locations) - 0.25) < 0.05


def test_a_stuck_run_repeats_one_value_for_stuck_hours_then_recovers() -> None:
    for length in (8, 12):
        w = world(stuck_rate=1.0, stuck_hours=length)
        for s in w.sensors.values():
            runs = {w.quality.stuck_run(s, h) for h in WINDOW} - {None}
            assert len(runs) >= 2  # one a cycle
            for first, last in runs:  # type: ignore[misc]
                assert last - first + 1 == length
                assert len({w.published_value(s, h) for h in range(first, last + 1)}) == 1
                for normal in (first - 1, last + 1):
                    assert w.quality.stuck_run(s, normal) is None
                    assert w.published_value(s, normal) == w.clean_value(s, normal)


def _neighbours_are_normal(w: World, s: Sensor, hour: int) -> bool:
    return all(
        not w.quality.is_spike(s, h) and w.published_value(s, h) == w.clean_value(s, h) for h in (hour - 1, hour + 1)
    )


def test_a_spike_is_a_single_hour_between_normal_neighbours() -> None:
    w = world(spike_rate=0.2)
    spikes = [(s, h) for s in w.sensors.values() for h in WINDOW[-48:] if w.quality.is_spike(s, h)]
    assert len(spikes) > 100
    for s, h in spikes:
        value = w.published_value(s, h)
        assert _neighbours_are_normal(w, s, h)
        assert value > 3 * max(w.published_value(s, h - 1), w.published_value(s, h + 1))
        if s.parameter.name == "pm25":
            assert 750 <= value <= 1000


def test_spikes_keep_away_from_stuck_and_inverted_hours() -> None:
    w = world(spike_rate=0.25, stuck_rate=0.5, pm25_gt_pm10_rate=1.0)
    q = w.quality
    spikes = [(s, h) for s in w.sensors.values() for h in WINDOW if q.is_spike(s, h)]
    assert len(spikes) > 1000
    for s, h in spikes:
        assert all(q.stuck_run(s, n) is None for n in (h - 1, h, h + 1))
        pair = q.pairs.get(s.location.id, ())
        if any(s is p for p in pair):
            assert not any(q.inverted(s.location, n) for n in (h - 1, h, h + 1))


def test_pm25_exceeds_pm10_at_the_same_hour_on_inverting_locations() -> None:
    w = world(pm25_gt_pm10_rate=1.0, stuck_rate=0.3, spike_rate=0.1)
    q = w.quality
    assert len(q.pairs) > 20
    for loc_id, (pm25, pm10) in q.pairs.items():
        loc = w.by_location[loc_id]
        inverted = [h for h in WINDOW if q.inverted(loc, h)]
        assert inverted, loc_id
        for h in inverted:
            assert w.published_value(pm25, h) > w.published_value(pm10, h)
            assert w.published_value(pm10, h) == w.clean_value(pm10, h)
        # 3 to 8 hours a cycle, fewer only where a stuck sensor of the pair takes some
        whole = [c for c in range(WINDOW[0] // CYCLE_HOURS, WINDOW[-1] // CYCLE_HOURS + 1) if c * 72 in WINDOW]
        for cycle in [c for c in whole if (c + 1) * CYCLE_HOURS - 1 in WINDOW]:
            hours = range(cycle * CYCLE_HOURS, (cycle + 1) * CYCLE_HOURS)
            count = sum(1 for h in inverted if h in hours)
            if not any(q.stuck_run(s, h) for s in (pm25, pm10) for h in hours):
                assert 3 <= count <= 8


def test_the_report_lists_exactly_the_sensor_hours_whose_values_are_faulty() -> None:
    w = world(locations=60, stuck_rate=0.3, spike_rate=0.05, pm25_gt_pm10_rate=0.5)
    expected = expected_values(w)
    assert len(expected) > 300
    for s in w.sensors.values():
        for h in WINDOW:
            assert w.published_value(s, h) == expected.get((s.id, utc_str(h)), w.clean_value(s, h)), (s.id, h)


def test_flags_set_has_flags_on_the_hours_they_cover_for_the_sensors_they_apply_to() -> None:
    w = world(flag_rate=1.0)
    report = w.quality.report(WINDOW[0], WINDOW[-1], w.locations)
    assert {f["location_wide"] for f in report["flags"]} == {True, False}
    assert {f["flag_type"]["level"] for f in report["flags"]} == {"INFO", "WARNING", "ERROR"}
    flagged = {(sid, h) for f in report["flags"] for sid in f["sensor_ids"] for h in f["hours"]}
    for loc in w.locations[:40]:
        for s in loc.sensors:
            for h in WINDOW:
                has = w.hour_row_json(s, h, "raw")["flagInfo"]["hasFlags"]
                assert has == ((s.id, utc_str(h)) in flagged), (s.id, h)


def test_flags_have_the_real_api_shape_and_start_by_the_world_clock() -> None:
    w = world(flag_rate=1.0)
    loc = w.by_location[2178]
    flags = w.quality.flags(loc)
    assert len(flags) > 500  # one a cycle since 2016
    assert all(f.start_s <= NOW for f in flags) and flags == sorted(flags, key=lambda f: f.start_s)
    for f in flags[-20:]:
        body = f.api_json()
        assert list(body) == ["locationId", "flagType", "datetimeFrom", "datetimeTo", "sensorIds", "note"]
        assert body["locationId"] == 2178 and body["flagType"]["id"] in FLAG_TYPES
        assert set(body["flagType"]) == {"id", "label", "level"}
        assert set(body["datetimeFrom"]) == {"utc", "local"} and body["datetimeFrom"]["utc"].endswith("Z")
        assert body["datetimeFrom"]["local"][-6:] in ("-07:00", "-06:00")  # America/Denver
        assert body["sensorIds"] in ([], *([s.id] for s in loc.sensors))
        assert HOUR < f.end_s - f.start_s < 13 * HOUR  # 2 to 12 hours, from and to a few minutes past
    window = w.quality.flags(loc, NOW - 10 * 86_400, NOW)
    assert [f.api_json() for f in window] == [f.api_json() for f in flags if f.end_s > NOW - 10 * 86_400]


def test_quality_options_are_checked() -> None:
    for bad in ({"spike_rate": 0.3}, {"stuck_rate": 1.5}, {"stuck_hours": 1}, {"stuck_hours": 49}, {"flag_rate": -0.1}):
        with pytest.raises(ValueError):
            WorldConfig(**bad)
    config = WorldConfig()
    assert (config.stuck_rate, config.stuck_hours, config.spike_rate, config.pm25_gt_pm10_rate, config.flag_rate) == (
        0.0,
        8,
        0.0,
        0.0,
        0.0,
    )
    config.update(stuck_rate="0.5", stuck_hours="12", spike_rate=0.25)
    assert (config.stuck_rate, config.stuck_hours, config.spike_rate) == (0.5, 12, 0.25)


def test_command_line_flags_set_the_quality_options() -> None:
    args = ["--stuck-rate", "0.2", "--stuck-hours", "6", "--spike-rate", "0.01", "--pm25-gt-pm10-rate", "0.3"]
    config = config_from_args(build_parser().parse_args([*args, "--flag-rate", "0.4"]))
    assert (config.stuck_rate, config.stuck_hours, config.spike_rate) == (0.2, 6, 0.01)
    assert (config.pm25_gt_pm10_rate, config.flag_rate) == (0.3, 0.4)
