"""The OpenAQ client against the simulator over real HTTP: paging, retries, rate limits, key hygiene; and against
a tiny hostile server of its own for what the simulator cannot send (bad headers, bad bodies, echoed keys)."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest

from airq_app import openaq
from airq_dev.fixtures_openaq import TEST_KEY, fast_client, latest_triples, running_simulator, served_triples
from airq_dev.simulator import HOUR, SimulatorThread

pytestmark = pytest.mark.integration

SIX = ["pm25", "pm10", "o3", "no2", "so2", "co"]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with running_simulator(locations=400, seed=11) as s:
        yield s


@pytest.fixture
def fresh(sim: SimulatorThread) -> Iterator[SimulatorThread]:
    """The shared simulator with clean stats and no faults."""
    sim.set_faults(reset=True)
    sim.reset()
    yield sim
    sim.set_faults(reset=True)


# -- paging --------------------------------------------------------------------------------------------------------


def test_list_locations_pages_until_a_short_page(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    small_pages = client.list_locations({}, limit=37)
    assert client.request_count == 11  # 400 = 10 full pages + 1 short one
    assert [loc["id"] for loc in small_pages] == sorted(loc.id for loc in fresh.sim.world.locations)
    one_page = client.list_locations()
    assert [loc["id"] for loc in one_page] == [loc["id"] for loc in small_pages]
    assert client.request_count == 12


def test_a_full_last_page_costs_one_empty_page(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    locations = client.list_locations({}, limit=100)  # 400 = 4 full pages: "found" says ">100" on each
    assert len(locations) == 400 and client.request_count == 5


def test_list_locations_filters(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    us_gb = client.list_locations({"iso": ["US", "GB"]})
    assert {loc["country"]["code"] for loc in us_gb} == {"US", "GB"}
    assert len(us_gb) == len(client.list_locations({"iso": "US"})) + len(client.list_locations({"iso": "GB"}))
    boxed = client.list_locations({"bbox": (-125.0, 30.0, -100.0, 50.0), "parameters_id": [2, 7]})
    assert boxed and all(-125 <= loc["coordinates"]["longitude"] <= -100 for loc in boxed)


def test_latest_for_parameter_pages_and_matches_what_was_served(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    paged = list(client.latest_for_parameter(2, limit=50))
    assert len(paged) > 100 and client.request_count == len(paged) // 50 + 1
    assert latest_triples(paged) == served_triples(fresh, "latest")
    assert latest_triples(list(client.latest_for_parameter(2))) == latest_triples(paged)


def test_poll_of_six_parameters_maps_every_served_measurement(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    index = openaq.index_locations(client.list_locations())
    fetched_at = "2025-01-01T00:00:00Z"
    measurements = []
    reasons: dict[str, int] = {}
    for name, pid in openaq.parameter_variants(SIX):
        for item in client.latest_for_parameter(pid):
            m = openaq.measurement_from_latest(item, index, fetched_at, reasons=reasons)
            assert m is not None and m["parameter"] == name and m["parameter_id"] == pid
            measurements.append(m)
    assert reasons == {}
    got = sorted((m["sensor_id"], m["datetime_utc"], m["value"]) for m in measurements)
    assert got == sorted(served_triples(fresh, "latest"))
    units = {(m["parameter"], m["unit"]) for m in measurements}
    assert ("no2", "ppm") in units and ("no2", "µg/m³") in units and ("no2", "ppb") in units


def test_sensor_hours_catch_up(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    rows = client.sensor_hours(3920, datetime(2025, 3, 1, tzinfo=UTC), "2025-03-03T00:00:00Z", limit=20)
    assert client.request_count == 3  # 48 rows in pages of 20
    assert [r["period"]["datetimeTo"]["utc"] for r in rows][:2] == ["2025-03-01T01:00:00Z", "2025-03-01T02:00:00Z"]
    assert len(rows) == 48
    world = fresh.sim.world
    sensor = world.sensors[3920]
    first = int(datetime(2025, 3, 1, 1, tzinfo=UTC).timestamp()) // HOUR
    assert [r["value"] for r in rows] == [world.value(sensor, first + i) for i in range(48)]
    assert [(3920, r["period"]["datetimeTo"]["utc"], r["value"]) for r in rows] == served_triples(fresh, "hours")
    raw = client.sensor_measurements(3920, "2025-03-01T00:00:00Z", "2025-03-01T02:00:00Z")
    assert [r["period"]["label"] for r in raw] == ["raw", "raw"]


# -- errors that are not retried -----------------------------------------------------------------------------------


def test_401_without_key_is_not_retried(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url, key=None)
    with pytest.raises(openaq.OpenAQAuthError) as info:
        client.list_locations()
    assert info.value.status == 401 and "X-API-Key" in str(info.value)
    assert client.request_count == 1 and client.retry_count == 0


def test_404_and_422_are_not_retried(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    with pytest.raises(openaq.OpenAQNotFoundError) as info:
        client.get_location(1)
    assert "Location not found" in str(info.value)
    with pytest.raises(openaq.OpenAQNotFoundError):
        list(client.latest_for_parameter(424242))
    with pytest.raises(openaq.OpenAQRequestError) as bad:
        client.list_locations({"bbox": "10,10,0,0"})
    assert bad.value.status == 422
    assert client.request_count == 3 and client.retry_count == 0


# -- retries -------------------------------------------------------------------------------------------------------


def test_retries_on_5xx_408_and_malformed_json(fresh: SimulatorThread) -> None:
    fresh.set_faults(fail_next=[503, 500, "malformed", 408, 502, 504], kinds=["parameter_latest"])
    client = fast_client(fresh.url, max_retries=6)
    items = list(client.latest_for_parameter(2))
    assert client.retry_count == 6 and client.error_counts["malformed"] == 1
    assert client.status_counts[200] == 2  # the truncated 200 and the good one
    assert latest_triples(items) == served_triples(fresh, "latest")  # the truncated body was not recorded as served
    assert items and fresh.stats(include_served=False)["faults_injected"]["malformed"] == 1


def test_retry_mid_paging_loses_nothing(fresh: SimulatorThread) -> None:
    client = fast_client(fresh.url)
    expected = latest_triples(list(client.latest_for_parameter(2, limit=40)))
    fresh.reset()
    fresh.set_faults(error_rate=0.3, malformed_rate=0.2, kinds=["parameter_latest"])
    client = fast_client(fresh.url, max_retries=20)
    got = latest_triples(list(client.latest_for_parameter(2, limit=40)))
    assert got == expected
    assert client.retry_count > 0
    assert got == served_triples(fresh, "latest")


def test_gives_up_after_max_retries(fresh: SimulatorThread, caplog: pytest.LogCaptureFixture) -> None:
    fresh.set_faults(fail_next=[503, 503, 503, 503])
    client = fast_client(fresh.url, max_retries=2)
    with pytest.raises(openaq.OpenAQUnavailableError) as info:
        client.list_locations()
    assert "3 attempts" in str(info.value) and "503" in str(info.value)
    assert client.request_count == 3
    assert "giving up" in caplog.text


def test_timeouts_are_retried(fresh: SimulatorThread) -> None:
    fresh.set_faults(fail_next=["slow"], delay_s=1.0)
    client = fast_client(fresh.url, timeout=(1.0, 0.3))
    assert len(client.list_locations()) == 400
    assert client.error_counts["timeout"] == 1 and client.retry_count == 1


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = fast_client(f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(openaq.OpenAQUnavailableError) as info:
        client.list_locations()
    assert "connection error" in str(info.value)
    assert client.error_counts["connection"] == 3


# -- rate limits ---------------------------------------------------------------------------------------------------


def test_budget_keeps_a_busy_client_under_the_limit() -> None:
    with running_simulator(locations=100, rate_limit_per_minute=4, minute_seconds=0.5) as s:
        client = fast_client(s.url, per_minute=4, minute_seconds=0.5)
        started = time.monotonic()
        locations = client.list_locations({}, limit=10)  # 11 requests
        assert len(locations) == 100
        stats = s.stats(include_served=False)
        assert stats["rate_limited"] == 0 and stats["requests_total"] == 11
        assert client.budget.waits > 0 and time.monotonic() - started >= 1.0
        assert client.last_rate_limit_remaining is not None and client.last_rate_limit_limit == 4


def test_budget_adopts_the_servers_lower_limit() -> None:
    with running_simulator(locations=60, rate_limit_per_minute=3, minute_seconds=0.5) as s:
        client = fast_client(s.url, per_minute=1000, minute_seconds=0.5)
        assert len(client.list_locations({}, limit=10)) == 60  # 7 requests
        assert s.stats(include_served=False)["rate_limited"] == 0
        assert client.status_counts == {200: 7}


def test_budget_per_hour() -> None:
    with running_simulator(locations=30, rate_limit_per_minute=100, minute_seconds=0.02) as s:
        client = fast_client(s.url, per_minute=100, per_hour=3, minute_seconds=0.02)  # an "hour" of 1.2 s
        started = time.monotonic()
        client.list_locations({}, limit=10)  # 4 requests: the 4th waits for the hour window
        assert time.monotonic() - started >= 1.2
        assert s.stats(include_served=False)["rate_limited"] == 0


def test_forced_429_waits_the_reset_and_loses_nothing(fresh: SimulatorThread, caplog: pytest.LogCaptureFixture) -> None:
    fresh.sim.config.minute_seconds = 1.0  # resets of about a second
    try:
        client = fast_client(fresh.url)
        expected = latest_triples(list(client.latest_for_parameter(2, limit=100)))
        fresh.reset()
        fresh.set_faults(fail_next=[429, 429], kinds=["parameter_latest"])
        client = fast_client(fresh.url)
        started = time.monotonic()
        got = latest_triples(list(client.latest_for_parameter(2, limit=100)))
    finally:
        fresh.sim.config.minute_seconds = 60.0
    assert got == expected == served_triples(fresh, "latest")
    assert client.rate_limited_count == 2 and client.status_counts[429] == 2
    assert client.retry_count == 0  # 429 waits do not use up retries
    assert time.monotonic() - started >= 1.0
    assert "429" in caplog.text


def test_persistent_429_is_reported(fresh: SimulatorThread) -> None:
    fresh.sim.config.minute_seconds = 1.0
    try:
        fresh.set_faults(fail_next=[429, 429, 429])
        client = fast_client(fresh.url, max_rate_limit_waits=1)
        with pytest.raises(openaq.OpenAQRateLimitError):
            client.list_locations()
        assert client.request_count == 2
    finally:
        fresh.sim.config.minute_seconds = 60.0


# -- the key never leaks -------------------------------------------------------------------------------------------


def test_key_never_appears_in_logs_errors_or_status(fresh: SimulatorThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fresh.sim.config.minute_seconds = 1.0
    errors: list[BaseException] = []
    client = fast_client(fresh.url, max_retries=1, max_rate_limit_waits=0)
    try:
        fresh.set_faults(fail_next=[503, "malformed", 500, 429])
        for call in (
            client.list_locations,  # 503 then malformed: gives up
            client.list_locations,  # 500 then fine
            client.list_locations,  # 429 with no waits allowed
            lambda: client.get_location(1),  # 404
            lambda: client.list_locations({"limit": 0, "bbox": "x"}),  # 422
        ):
            try:
                call()
            except openaq.OpenAQError as exc:
                errors.append(exc)
        dead = fast_client("http://127.0.0.1:1", max_retries=0)
        with pytest.raises(openaq.OpenAQError) as conn:
            dead.list_locations()
        errors.append(conn.value)
    finally:
        fresh.sim.config.minute_seconds = 60.0
    assert len(errors) == 5
    texts = [r.getMessage() for r in caplog.records] + [str(e) + repr(e) for e in errors]
    texts += [repr(client), str(client.stats()), str(client.last_error)]
    assert any("GET" in t for t in texts)  # debug request logs were captured
    assert not [t for t in texts if TEST_KEY in t]
    assert all(TEST_KEY not in str(e.__cause__) + str(e.__context__) for e in errors)


# -- a hostile server of the test's own ----------------------------------------------------------------------------

Answer = tuple[int, dict[str, str], bytes]


@contextmanager
def hostile_server(answer: Callable[[str, dict[str, list[str]], dict[str, str]], Answer]) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that answers each GET with `answer(path, query, headers)`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlsplit(self.path)
            status, headers, body = answer(url.path, parse_qs(url.query), dict(self.headers.items()))
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                if value:  # an empty value leaves the header out (Content-Length: read until close)
                    self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, as it should for a body that is too large

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def envelope(results: list[Any]) -> bytes:
    return json.dumps({"meta": {"found": len(results)}, "results": results}).encode()


# -- hostile input: the key -----------------------------------------------------------------------------------------


def test_a_key_ending_in_a_newline_is_stripped_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_simulator(locations=30, api_keys=[TEST_KEY]) as s:  # any other key is a 401
        client = fast_client(s.url, key=TEST_KEY + "\n")
        locations = client.list_locations()
    assert len(locations) == 30 and client.status_counts == {200: 1}
    assert TEST_KEY not in caplog.text + repr(client) + json.dumps(client.stats())


@pytest.mark.parametrize("bad", ["\x00", "\n", "\r", "\x7f", "é"])
def test_a_key_with_a_control_character_inside_is_refused_without_showing_it(bad: str) -> None:
    key = TEST_KEY[:8] + bad + TEST_KEY[8:]
    with pytest.raises(ValueError) as info:
        fast_client("http://127.0.0.1:9", key=key)
    text = str(info.value) + repr(info.value)
    assert "X-API-Key" in text and "position 9" in text
    assert TEST_KEY[:8] not in text and TEST_KEY[8:] not in text and key not in text
    assert isinstance(info.value, openaq.OpenAQError)


KEY_WITH_SPECIALS = "tk/5f3a+9c0e=1d&x"  # percent-encodes to something else


def test_every_form_of_the_key_a_server_echoes_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        key = headers.get("X-API-Key", "")
        echo = f"raw {key} url {quote(key, safe='')} repr {key!r} json {json.dumps(key)} bytes {key.encode()!r}"
        status = 503 if path.endswith("/latest") else 422
        return status, {}, json.dumps({"detail": echo}).encode()

    with hostile_server(answer) as url:
        client = fast_client(url, key=KEY_WITH_SPECIALS, max_retries=1)
        errors = []
        for call in (client.list_locations, lambda: list(client.latest_for_parameter(2))):
            with pytest.raises(openaq.OpenAQError) as info:
                call()
            errors.append(info.value)
    assert "raw *** url *** repr" in str(errors[0])
    texts = [r.getMessage() for r in caplog.records] + [str(e) + repr(e) for e in errors]
    texts += [repr(client), json.dumps(client.stats())]
    forms = [KEY_WITH_SPECIALS, quote(KEY_WITH_SPECIALS, safe=""), "5f3a", "9c0e"]
    assert not [t for t in texts if any(f in t for f in forms)]


def test_scrub_replaces_every_form_of_a_key() -> None:
    key = " k/ey+1=\n"
    text = f"{key} {key!r} {key.strip()} {quote(key, safe='')} {quote(key.strip())} {json.dumps(key)} {key.encode()!r}"
    scrubbed = openaq.scrub(text, key)
    assert "k/ey" not in scrubbed and "k%2Fey" not in scrubbed and "ey+1" not in scrubbed
    assert scrubbed.count("***") >= 7
    assert openaq.scrub("nothing to hide", None) == "nothing to hide"


# -- hostile input: payloads, headers, sizes, endless listings -----------------------------------------------------

DATA = Path(__file__).resolve().parent.parent / "data" / "openaq"


def test_one_malformed_location_does_not_stop_the_index(caplog: pytest.LogCaptureFixture) -> None:
    good = json.loads((DATA / "docs_location_2178.json").read_text(encoding="utf-8"))["results"][0]
    other = {**good, "id": 2179, "sensors": [{"id": 77, "parameter": {"id": 2, "name": "pm25", "units": "µg/m³"}}]}
    bad = {**good, "id": 4242, "sensors": 5}
    served = [good, bad, other]

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        return 200, {}, envelope(served)

    with hostile_server(answer) as url:
        locations = fast_client(url).list_locations()
    assert [loc["id"] for loc in locations] == [2178, 2179, 4242]
    reasons: dict[str, int] = {}
    index = openaq.index_locations(locations, reasons=reasons)
    assert {m["location_id"] for m in index.values()} == {2178, 2179} and 77 in index and len(index) == 9
    assert reasons == {openaq.REASON_BAD_LOCATION: 1}
    lines = [r.getMessage() for r in caplog.records if "4242" in r.getMessage()]
    assert len(lines) == 1 and "skipped" in lines[0]


@pytest.mark.parametrize(
    ("headers", "bad"),
    [
        ({"x-ratelimit-remaining": "inf"}, 1),  # int(float("inf")) is an OverflowError
        ({"x-ratelimit-limit": "1e400", "x-ratelimit-reset": "-inf"}, 2),
        ({"x-ratelimit-limit": "nan", "x-ratelimit-remaining": "NaN", "x-ratelimit-reset": "nan"}, 3),
        ({"x-ratelimit-remaining": "-5", "x-ratelimit-reset": "-7"}, 2),  # only -1/-2 are documented for reset
        ({"x-ratelimit-limit": "100000000000", "x-ratelimit-reset": "99999999999"}, 2),
        ({"x-ratelimit-limit": "sixty"}, 1),
    ],
)
def test_malformed_rate_limit_headers_are_ignored_and_counted(headers: dict[str, str], bad: int) -> None:
    def answer(path: str, query: dict[str, list[str]], _headers: dict[str, str]) -> Answer:
        return 200, headers, envelope([{"id": 1, "sensors": []}, {"id": 2, "sensors": []}])

    with hostile_server(answer) as url:
        client = fast_client(url)
        started = time.monotonic()
        for _ in range(3):
            assert [loc["id"] for loc in client.list_locations()] == [1, 2]
    assert time.monotonic() - started < 1.0  # no wait was derived from a malformed header
    assert client.error_counts["bad_header"] == 3 * bad
    assert client.last_rate_limit_remaining is None and client.last_rate_limit_limit is None
    assert client.budget.wait_time() == 0


def test_a_429_with_an_infinite_reset_waits_about_a_second() -> None:
    calls: list[int] = []

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        calls.append(1)
        if len(calls) == 1:
            limits = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "inf"}
            return 429, limits, b'{"detail":"Too many requests"}'
        return 200, {}, envelope([{"id": 1}])

    with hostile_server(answer) as url:
        client = fast_client(url)
        started = time.monotonic()
        assert [loc["id"] for loc in client.list_locations()] == [1]
    assert 0.9 <= time.monotonic() - started < 5
    assert client.rate_limited_count == 1 and client.error_counts["bad_header"] == 1


def big_envelope(size: int) -> bytes:
    """A valid envelope of about `size` bytes."""
    return b'{"meta": {}, "results": [], "pad": "' + b"0" * size + b'"}'


@pytest.mark.parametrize("how", ["declared", "gzip_bomb", "no_length"])
def test_a_body_above_the_cap_is_refused_without_reading_it_all(how: str) -> None:
    body = big_envelope(25 * 1024 * 1024)
    sent: list[int] = []

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        sent.append(1)
        if how == "gzip_bomb":  # 25 MB of JSON in about 25 kB on the wire
            return 200, {"Content-Encoding": "gzip"}, gzip.compress(body)
        if how == "no_length":
            return 200, {"Content-Length": "", "Connection": "close"}, body
        return 200, {}, body

    with hostile_server(answer) as url:
        client = fast_client(url)
        with pytest.raises(openaq.OpenAQError) as info:
            client.list_locations()
    assert "larger than the 20.9715 MB the client accepts" in str(info.value)
    assert len(sent) == 1 and client.request_count == 1  # not retried
    assert client.error_counts["too_large"] == 1 and client.last_error == str(info.value)


def test_the_body_cap_is_configurable() -> None:
    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        return 200, {}, big_envelope(2000)

    with hostile_server(answer) as url:
        assert fast_client(url, max_body_bytes=3000).list_locations() == []
        with pytest.raises(openaq.OpenAQError, match="larger than the 0.001 MB"):
            fast_client(url, max_body_bytes=1000).list_locations()


def test_an_endless_listing_stops_at_the_page_cap() -> None:
    pages: list[int] = []

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        page = int(query["page"][0])
        pages.append(page)
        if page > 1200:  # only so that a client without a cap ends too
            return 200, {}, envelope([])
        return 200, {}, envelope([{"id": page, "sensors": []}])  # always a full page of limit=1

    with hostile_server(answer) as url:
        client = fast_client(url, per_minute=100_000, per_hour=100_000)
        with pytest.raises(openaq.OpenAQError) as info:
            client.list_locations(limit=1)
        assert "more than 1000 pages" in str(info.value) and len(pages) == 1000
        pages.clear()
        with pytest.raises(openaq.OpenAQTooManyPagesError):
            fast_client(url, max_pages=7).list_locations(limit=1)
        assert pages == [1, 2, 3, 4, 5, 6, 7]


def failing_pages_server(failing: set[int], last_page: int) -> Callable[..., Answer]:
    """Full pages of 2 rows up to `last_page` (a short one), a 503 for the pages in `failing`."""

    def answer(path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        page = int(query["page"][0])
        if page in failing:
            return 503, {}, b'{"detail": "upstream timeout"}'
        rows = [{"sensorsId": page * 10 + i, "value": 1.0, "datetime": {"utc": "2025-01-01T00:00:00Z"}} for i in (0, 1)]
        return 200, {}, envelope(rows if page < last_page else rows[:1])

    return answer


def test_a_failed_page_of_latest_values_is_skipped_and_the_others_kept(caplog: pytest.LogCaptureFixture) -> None:
    with hostile_server(failing_pages_server({2}, last_page=4)) as url:
        client = fast_client(url, max_retries=1)
        items = list(client.latest_for_parameter(2, limit=2))
    assert [i["sensorsId"] for i in items] == [10, 11, 30, 31, 40]
    assert client.skipped_pages == 1 and client.stats()["skipped_pages"] == 1
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        "openaq: /v3/parameters/2/latest page 2 skipped: /v3/parameters/2/latest failed after 2 attempts: "
        "HTTP 503: upstream timeout"
    ]


def test_failed_pages_in_a_row_and_failed_location_pages_still_raise() -> None:
    with hostile_server(failing_pages_server({2, 3, 4}, last_page=9)) as url:
        client = fast_client(url, max_retries=0)
        with pytest.raises(openaq.OpenAQUnavailableError):
            list(client.latest_for_parameter(2, limit=2))
        assert client.skipped_pages == 2  # pages 2 and 3; the third failure in a row ends the listing
    with hostile_server(failing_pages_server({2}, last_page=4)) as url:
        client = fast_client(url, max_retries=0)
        with pytest.raises(openaq.OpenAQUnavailableError):
            client.list_locations(limit=2)  # all or nothing: a partial index would lose sensors for hours
        assert client.skipped_pages == 0
