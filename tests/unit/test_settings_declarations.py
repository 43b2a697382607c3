"""Each setting declared once (airq_app.settings): the generic loader, the schema and the files that follow it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from airq_app.settings import DECLARED, ConfigError, OutputSettings, Settings, load_settings
from airq_app.settings_fields import dump_json, pipeline_schema, read_sections, setting, to_json
from airq_dev.harness import Pipeline

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Toy:
    """A section declared only for these tests."""

    count: int = setting(3, "A count.", env="TOY_COUNT", minimum=1, maximum=10)
    ratio: float = setting(0.5, "A ratio.", env="TOY_RATIO", exclusive_minimum=0, maximum=1)
    names: tuple[str, ...] = setting(("a",), "Names.", env="TOY_NAMES")
    copies: int | None = setting(None, "Copies; auto: as many as there are.", env="TOY_COPIES", auto="auto")
    url: str = setting("http://x", "A URL.", env="TOY_URL", file=False, pattern="^https?://", expected="a URL")
    twice: int = setting(None, "Twice the count.", file=False, derive=lambda s: s["toy"].count * 2)


def read(data: dict, env: dict[str, str]) -> tuple[Toy, dict[str, str]]:
    sections, sources = read_sections({"toy": Toy}, data, env, "toy.json")
    return sections["toy"], sources


def write(tmp_path: Path, data: dict) -> dict[str, str]:
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(data))
    return {"AIRQ_PIPELINE": str(path)}


def test_a_default_comes_from_the_declaration() -> None:
    toy, sources = read({}, {})
    assert (toy.count, toy.ratio, toy.names, toy.copies, toy.url) == (3, 0.5, ("a",), None, "http://x")
    assert toy.twice == 6  # derived from the other values once every section is read
    assert set(sources.values()) == {"default"}


def test_the_environment_wins_over_the_file_and_is_converted_to_the_declared_type() -> None:
    env = {"TOY_COUNT": " 7 ", "TOY_RATIO": "0.25", "TOY_NAMES": "b, c,", "TOY_COPIES": "auto", "TOY_URL": "https://y"}
    toy, sources = read({"toy": {"count": 4, "copies": 2}}, env)
    assert (toy.count, toy.ratio, toy.names, toy.copies, toy.url, toy.twice) == (
        7,
        0.25,
        ("b", "c"),
        None,
        "https://y",
        14,
    )
    assert sources["toy.count"] == "TOY_COUNT"
    toy, sources = read({"toy": {"count": 4, "copies": 2}}, {"TOY_COUNT": "  "})  # blank: not set
    assert (toy.count, toy.copies, sources["toy.count"]) == (4, 2, "toy.json toy.count")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TOY_COUNT": "many"}, "TOY_COUNT: 'many' is not an integer"),
        ({"TOY_COUNT": "11"}, "TOY_COUNT: 11 is out of range (1..10)"),
        ({"TOY_RATIO": "0"}, "TOY_RATIO: 0.0 must be more than 0.0"),
        ({"TOY_RATIO": "2"}, "TOY_RATIO: 2.0 must be at most 1.0"),
        ({"TOY_RATIO": "nan"}, "TOY_RATIO: 'nan' is not a finite number"),
        ({"TOY_COPIES": "some"}, "TOY_COPIES: 'some' is not an integer"),
        ({"TOY_URL": "ftp://y"}, "TOY_URL: 'ftp://y' is not a URL"),
    ],
)
def test_a_bad_environment_variable_is_one_line_naming_it(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        read({}, env)
    assert str(raised.value) == expected


def test_the_schema_comes_from_the_declarations() -> None:
    part = pipeline_schema({"toy": Toy}, "toy")["properties"]["toy"]
    assert part["additionalProperties"] is False
    assert part["properties"]["count"] == {
        "description": "A count.",
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "default": 3,
    }
    assert part["properties"]["copies"]["type"] == ["integer", "string"]
    assert part["properties"]["copies"]["default"] == "auto"
    assert "url" not in part["properties"] and "twice" not in part["properties"]  # only from the environment


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("output", {"flush_interval_s": 100}, "output.flush_interval_s: 100 is greater than the maximum of 60"),
        ("output", {"finish_idle": 1}, "output.finish_idle: unknown key"),
        ("openaq", {"api_key": "k"}, "openaq.api_key: not allowed here: set OPENAQ_API_KEY in the environment or .env"),
        (
            "kafka",
            {"sasl_password": "p"},
            "kafka.sasl_password: not allowed here: set AIRQ_KAFKA_PASSWORD in the environment or .env",
        ),
        ("app", {"role": "all"}, "app.role: unknown key"),  # only from the environment
    ],
)
def test_a_bad_pipeline_key_is_one_line_naming_it(tmp_path: Path, section: str, values: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, {section: values}), dotenv=False)
    assert str(raised.value) == f"{tmp_path / 'pipeline.json'}: {expected}"


def test_an_empty_pipeline_file_gives_every_declared_default(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, {}), dotenv=False)
    assert s.output == OutputSettings() and s.output.finish_idle_s == 0.25 and s.output.rotate_max_age_s == 10
    assert s.filter_rules() == Settings().filter_rules()
    assert s.sources["output.finish_idle_s"] == "default"


def test_a_range_applies_to_the_environment_and_to_the_file_alike(tmp_path: Path) -> None:
    env = write(tmp_path, {"openaq": {"poll_interval_s": 100000}})
    with pytest.raises(ConfigError, match=r"openaq.poll_interval_s: 100000 is greater than the maximum of 86400"):
        load_settings(env, dotenv=False)
    env = {**write(tmp_path, {}), "AIRQ_POLL_INTERVAL": "100000"}
    with pytest.raises(ConfigError, match=r"^AIRQ_POLL_INTERVAL: 100000.0 must be at most 86400.0$"):
        load_settings(env, dotenv=False)


def test_the_schema_file_is_written_from_the_declarations() -> None:
    shipped = (ROOT / "airq_app" / "pipeline.schema.json").read_text(encoding="utf-8")
    assert shipped == dump_json(DECLARED.schema) + "\n", "out of date: run python -m airq_app.settings"


def test_the_shipped_pipeline_file_holds_the_declared_defaults() -> None:
    data = json.loads((ROOT / "pipeline.json").read_text())
    for section, values in data.items():
        if section == "$schema":
            continue
        for key, value in values.items():
            d = DECLARED.file_keys[f"{section}.{key}"]
            assert value == to_json(d.default, d.rules.auto), f"{section}.{key}"


def test_each_environment_variable_is_declared_once_and_read_only_by_the_settings() -> None:
    names = [d.rules.env for d in DECLARED.fields.values() if d.rules.env]
    assert len(names) == len(set(names))
    readers = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "airq_app").rglob("*.py"))
        if path.name != "settings.py" and re.search(r"os\.environ|getenv\(", path.read_text(encoding="utf-8"))
    ]
    assert readers == []


def test_the_readme_table_lists_every_declared_variable() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"^\| `([A-Z_]+)`(?:, `([A-Z_]+)`)?", readme, re.M))
    in_table = {name for pair in listed for name in pair if name}
    declared_names = {d.rules.env for d in DECLARED.fields.values() if d.rules.env}
    assert in_table == declared_names


def test_the_harness_refuses_an_override_the_settings_do_not_declare(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="output__finish_idle names no pipeline.json key"):
        Pipeline(tmp_path, "127.0.0.1:9092", output__finish_idle=0)
    p = Pipeline(tmp_path, "127.0.0.1:9092", output__finish_idle_s=0)
    assert json.loads(p.pipeline_path.read_text())["output"]["finish_idle_s"] == 0


def test_components_keep_no_output_defaults_of_their_own() -> None:
    import inspect

    from airq_app.sink import JsonLinesSink

    parameters = inspect.signature(JsonLinesSink).parameters
    assert parameters["output"].default is inspect.Parameter.empty
    assert not {"max_bytes", "max_age_s", "quiet_s"} & set(parameters)
    assert OutputSettings().finish_idle_s == 0.25
