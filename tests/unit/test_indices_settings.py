"""The `pipeline.json` section `indices`: defaults, overrides reaching the stream's rules, one-line errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from airq_app.domain.decide import decide
from airq_app.domain.validation import parse_measurement
from airq_app.settings import ConfigError, load_settings
from airq_dev.harness import ROOT, encode, measurement

pytestmark = pytest.mark.unit


def pipeline(tmp_path: Path, indices: object) -> dict[str, str]:
    data = json.loads((ROOT / "pipeline.json").read_text())
    data.pop("$schema", None)
    data["indices"] = indices
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return {"AIRQ_PIPELINE": str(path)}


def test_shipped_file_scores_every_country_with_its_default(tmp_path: Path) -> None:
    s = load_settings({"AIRQ_PIPELINE": str(ROOT / "pipeline.json")}, dotenv=False)
    rules = s.filter_rules()
    assert rules.indices.enabled and dict(rules.indices.by_country) == {}
    assert rules.indices.index_for("IN") == "IN" and rules.indices.index_for("FR") == "EU:new"
    assert rules.indices.index_for("BR") == "BR:Espírito Santo"


def test_overrides_reach_the_records(tmp_path: Path) -> None:
    s = load_settings(pipeline(tmp_path, {"by_country": {"BR": "BR:São Paulo", "FR": None}}), dotenv=False)
    rules = s.filter_rules()
    assert rules.indices.index_for("BR") == "BR:São Paulo" and rules.indices.index_for("FR") is None
    m = parse_measurement(encode(measurement(11, "2026-01-01T10:00:00Z", value=60.0, parameter="no2", unit="ppb"))[1])
    src = {"topic": "t", "partition": 0, "offset": 0}
    now = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    br = decide({**m, "country": "BR"}, src, None, rules, 3600.0, now).record
    assert br is not None and br["local_index"] is not None
    assert br["local_index"]["index"] == "BR:São Paulo" and br["local_index"]["averaging_hours"] == 1
    fr = decide({**m, "country": "FR"}, src, None, rules, 3600.0, now).record
    assert fr is not None and fr["local_index"] is None


def test_disabled(tmp_path: Path) -> None:
    s = load_settings(pipeline(tmp_path, {"enabled": False}), dotenv=False)
    assert s.filter_rules().indices.index_for("IN") is None


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"by_country": {"BR": "BR:Sao Paulo"}}, "indices.by_country.BR: unknown index 'BR:Sao Paulo' (tables for BR:"),
        ({"by_country": {"XX": "ZZ"}}, "indices.by_country.XX: unknown index 'ZZ'"),
        ({"by_country": {"bra": "US"}}, "indices.by_country: 'bra' does not match"),
        ({"enabled": "yes"}, "indices.enabled: 'yes' is not of type 'boolean'"),
        ({"colour": "red"}, "indices.colour: unknown key"),
    ],
)
def test_bad_section_is_one_line(tmp_path: Path, section: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(pipeline(tmp_path, section), dotenv=False)
    message = str(err.value)
    assert expected in message and "\n" not in message, message
