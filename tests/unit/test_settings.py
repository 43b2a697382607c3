from __future__ import annotations

import json
from pathlib import Path

import pytest

from airq_app.settings import SIMULATOR_KEY, ConfigError, load_settings

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, data: object | str) -> dict[str, str]:
    path = tmp_path / "pipeline.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return {"AIRQ_PIPELINE": str(path)}


def shipped() -> dict:
    return json.loads((ROOT / "pipeline.json").read_text())


def test_shipped_pipeline_defaults() -> None:
    s = load_settings({"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}, dotenv=False)
    assert s.app.role == "all" and s.web.port == 6066
    assert s.kafka.broker == "kafka://127.0.0.1:9092"
    assert s.output.directory == Path("output")
    assert s.app.data_dir == Path("data/worker-6066")
    assert s.openaq.using_simulator and s.openaq.base_url == "http://127.0.0.1:8765"
    assert s.selection.parameters == ("pm25", "pm10", "o3", "no2", "so2", "co")
    assert s.openaq.poll_interval_s == 60
    assert s.output.finish_idle_s == 0.25 and s.output.rotate_max_age_s == 10


def test_environment_overrides(tmp_path: Path) -> None:
    env = {
        "AIRQ_PIPELINE": str(ROOT / "pipeline.json"),
        "OPENAQ_API_KEY": "secret-key-123",
        "AIRQ_BROKER": "10.0.0.5:9093",
        "AIRQ_OUTPUT_DIR": str(tmp_path / "out"),
        "AIRQ_DATA_DIR": str(tmp_path / "state"),
        "AIRQ_WEB_PORT": "6070",
        "AIRQ_ROLE": "ingest",
        "AIRQ_POLL_INTERVAL": "15",
    }
    s = load_settings(env, dotenv=False)
    assert s.kafka.broker == "kafka://10.0.0.5:9093"
    assert s.openaq.base_url == "https://api.openaq.org" and not s.openaq.using_simulator
    assert s.openaq.api_key == "secret-key-123"
    assert (s.output.directory, s.app.data_dir, s.web.port, s.app.role) == (
        tmp_path / "out",
        tmp_path / "state",
        6070,
        "ingest",
    )
    assert s.openaq.poll_interval_s == 15.0
    assert s.app.polls and not s.app.processes
    # The key never shows up in the repr or the public view.
    assert "secret-key-123" not in repr(s)
    assert "secret-key-123" not in json.dumps(s.public())


def test_base_url_override_and_simulator_key() -> None:
    s = load_settings(
        {"AIRQ_PIPELINE": str(ROOT / "pipeline.json"), "OPENAQ_BASE_URL": "http://localhost:9/"}, dotenv=False
    )
    assert s.openaq.base_url == "http://localhost:9" and s.openaq.api_key == SIMULATOR_KEY and s.openaq.using_simulator


def test_dotenv_is_read_but_never_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("AIRQ_WEB_PORT=7001\nAIRQ_ROLE=process\n")
    (tmp_path / "pipeline.json").write_text((ROOT / "pipeline.json").read_text())
    monkeypatch.chdir(tmp_path)
    for name in ("AIRQ_WEB_PORT", "AIRQ_ROLE", "AIRQ_PIPELINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AIRQ_ROLE", "ingest")
    s = load_settings()
    assert s.web.port == 7001 and s.app.role == "ingest"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda p: p["openaq"].update(poll_interval_s=0),
            "openaq.poll_interval_s: 0 is less than the minimum of 1",
        ),
        (
            lambda p: p["openaq"].update(poll_interval_s="60"),
            "openaq.poll_interval_s: '60' is not of type 'number'",
        ),
        (lambda p: p["openaq"].update(pool_interval=5), "openaq.pool_interval: unknown key"),
        (lambda p: p.update(extra={}), "extra: unknown key"),
        (lambda p: p["app"].update(partitions=0), "app.partitions: 0 is less than the minimum of 1"),
        (lambda p: p["selection"].update(countries=["usa"]), "selection.countries.0: 'usa' does not match"),
        (lambda p: p["selection"].update(bbox=[1, 2, 3]), "selection.bbox"),
        (lambda p: p["selection"].update(bbox=[10, 10, 0, 0]), "selection.bbox: expected [minLon"),
        (
            lambda p: p["output"].update(rotate_max_bytes=10),
            "output.rotate_max_bytes: 10 is less than the minimum",
        ),
        (
            lambda p: p["output"].update(finish_idle_s=-1),
            "output.finish_idle_s: -1 is less than the minimum of 0",
        ),
    ],
)
def test_bad_pipeline_names_field_and_problem(tmp_path: Path, mutate, expected: str) -> None:
    data = shipped()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, data), dotenv=False)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid JSON at line 3 column"):
        load_settings(write(tmp_path, '{\n "app": {"id": "x"},\n "openaq": {,}\n}'), dotenv=False)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings({"AIRQ_PIPELINE": str(tmp_path / "nope.json")}, dotenv=False)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AIRQ_WEB_PORT", "http", "AIRQ_WEB_PORT: 'http' is not an integer"),
        ("AIRQ_WEB_PORT", "70000", "AIRQ_WEB_PORT: 70000 is out of range"),
        ("AIRQ_ROLE", "both", "AIRQ_ROLE: 'both' is not one of all, ingest, process"),
        ("AIRQ_POLL_INTERVAL", "0", "AIRQ_POLL_INTERVAL: 0.0 must be at least 1.0"),
        ("OPENAQ_BASE_URL", "ftp://x", "OPENAQ_BASE_URL: 'ftp://x' is not an http(s) URL"),
        ("OPENAQ_ARCHIVE_URL", "s3://bucket", "OPENAQ_ARCHIVE_URL: 's3://bucket' is not an http(s) URL"),
        ("AIRQ_KAFKA_PRODUCER_TIMEOUT_S", "soon", "AIRQ_KAFKA_PRODUCER_TIMEOUT_S: 'soon' is not a number"),
    ],
)
def test_bad_environment(name: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({"AIRQ_PIPELINE": str(ROOT / "pipeline.json"), name: value}, dotenv=False)
    assert expected in str(err.value)


def test_web_host_peer_hosts_and_archive_are_read_by_the_settings() -> None:
    env = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}
    s = load_settings(env, dotenv=False)
    assert s.web.host == "127.0.0.1" and s.web.peer_hosts == ("127.0.0.1", "localhost")
    assert s.backfill.archive_url == s.openaq.base_url == "http://127.0.0.1:8765"  # the simulator's, without a key
    s = load_settings(
        {
            **env,
            "AIRQ_WEB_HOST": "w1.example",
            "AIRQ_PEER_HOSTS": "w1.example, w2.example,",
            "OPENAQ_API_KEY": "k",
            "OPENAQ_ARCHIVE_URL": "https://archive.example/",
        },
        dotenv=False,
    )
    assert s.web.host == "w1.example" and s.web.peer_hosts == ("w1.example", "w2.example")
    assert s.backfill.archive_url == "https://archive.example"
    assert load_settings({**env, "OPENAQ_API_KEY": "k"}, dotenv=False).backfill.archive_url == (
        "https://openaq-data-archive.s3.amazonaws.com"
    )


def test_api_key_from_a_quoted_env_value_is_stripped_and_a_bad_one_is_refused_without_echoing_it() -> None:
    env = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}
    assert load_settings({**env, "OPENAQ_API_KEY": "abc123secret\n"}, dotenv=False).openaq.api_key == "abc123secret"
    with pytest.raises(ConfigError) as info:
        load_settings({**env, "OPENAQ_API_KEY": "abc\x07123secret"}, dotenv=False)
    assert "OPENAQ_API_KEY" in str(info.value) and "secret" not in str(info.value)


def test_infinite_poll_interval_and_non_utf8_pipeline_are_config_errors(tmp_path: Path) -> None:
    env = {"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}
    for bad in ("inf", "nan", "-inf"):
        with pytest.raises(ConfigError, match="AIRQ_POLL_INTERVAL"):
            load_settings({**env, "AIRQ_POLL_INTERVAL": bad}, dotenv=False)
    path = tmp_path / "pipeline.json"
    path.write_bytes(b'{"app": {"id": "\xff"}}')
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings({"AIRQ_PIPELINE": str(path)}, dotenv=False)
