"""Settings: `pipeline.json` (checked against `pipeline.schema.json`), overridden by the environment.

`.env` is read too but never overrides a real variable. A bad file or variable raises `ConfigError` with one
message naming the field and the problem.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from airq_app.domain.filters import FilterConfig
from airq_app.domain.indices import IndexConfig
from airq_app.kafka.security import KafkaConfigError, KafkaSecurity

SCHEMA_PATH = Path(__file__).with_name("pipeline.schema.json")
ROLES = ("all", "ingest", "process")

SIMULATOR_KEY = "airq-simulator"  # the simulator accepts any key; this one marks simulator mode

DEFAULTS: dict[str, dict[str, Any]] = {
    "app": {"id": "airq", "partitions": 8, "standby_replicas": 1, "web_bind": "127.0.0.1", "session_timeout_s": 30},
    "openaq": {
        "base_url": "https://api.openaq.org",
        "poll_interval_s": 60,
        "requests_per_minute": 60,
        "requests_per_hour": 2000,
        "timeout_s": 15,
        "max_retries": 5,
        "locations_refresh_hours": 6,
        "lookback_hours": 24,
        "first_sight_lookback_hours": 0,
        "gap_retry_minutes": 10,
        "page_limit": 1000,
    },
    "simulator": {"port": 8765, "locations": 200, "seed": 1},
    "selection": {
        "parameters": ["pm25", "pm10", "o3", "no2", "so2", "co"],
        "countries": [],
        "bbox": None,
        "location_ids": [],
    },
    "filters": {},
    "dedup": {"retention_days": 400},  # `retention_hours`, when a pipeline file gives it, takes precedence
    "output": {
        "rotate_max_bytes": 16 * 1024 * 1024,
        "rotate_max_age_s": 10,
        "flush_interval_s": 1.0,
        "finish_idle_s": 0.25,
    },
    # Faust's own producer timeout; airq's producer retries after it instead of giving up (airq_app.kafka).
    "kafka": {"replication_factor": "auto", "min_insync_replicas": "auto", "producer_request_timeout_s": 1200},
    # Each location's national index: its country's default unless `by_country` says otherwise (domain.indices).
    "indices": {"enabled": True, "by_country": {}},
}
# pipeline.json keys that would hold a Kafka secret: refused with a pointer to the environment variable.
KAFKA_SECRET_KEYS = ("password", "sasl_password", "sasl_plain_password")


class ConfigError(ValueError):
    """The pipeline file or an environment variable is invalid."""


@dataclass(frozen=True)
class OutputSettings:
    directory: Path
    worker_id: str
    rotate_max_bytes: int
    rotate_max_age_s: float
    flush_interval_s: float
    finish_idle_s: float  # a caught-up partition's file is finished after this long without a record; 0: off


@dataclass(frozen=True)
class Settings:
    app_id: str
    partitions: int
    standby_replicas: int
    web_bind: str
    web_port: int
    role: str
    broker: str
    data_dir: Path
    output_dir: Path
    pipeline_path: Path
    base_url: str
    api_key: str = field(repr=False)  # never printed: repr, logs and status leave it out
    using_simulator: bool
    poll_interval_s: float
    requests_per_minute: int
    requests_per_hour: int
    timeout_s: float
    max_retries: int
    locations_refresh_hours: float
    lookback_hours: int
    page_limit: int
    first_sight_lookback_hours: int
    gap_retry_minutes: float
    simulator_port: int
    simulator_locations: int
    simulator_seed: int
    parameters: tuple[str, ...]
    countries: tuple[str, ...]
    bbox: tuple[float, float, float, float] | None
    location_ids: tuple[int, ...]
    filters: dict[str, Any]
    dedup_retention_hours: float
    rotate_max_bytes: int
    rotate_max_age_s: float
    flush_interval_s: float
    finish_idle_s: float
    session_timeout_s: float = 30.0
    topic_prefix: str = ""  # namespaces the topics; only for running isolated test pipelines
    # TLS and SASL of every Kafka client; its repr and public() leave the password out.
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    replication_factor: int | None = None  # None: min(3, cluster size), see `airq_app.kafka.replication`
    min_insync_replicas: int | None = None  # None: min(2, replication factor)
    producer_request_timeout_s: float = 1200.0
    indices: IndexConfig = field(default_factory=IndexConfig)  # the `indices` section, checked
    # Required by every web endpoint but /airq/health when set (airq_app.web.auth); never in repr, logs or status.
    web_token: str = field(default="", repr=False)

    @property
    def broker_urls(self) -> list[str]:
        """`broker` as one URL per bootstrap server (`kafka://h1:9092,h2:9092` -> two), as Faust takes them."""
        return broker_urls(self.broker)

    @property
    def polls(self) -> bool:
        return self.role in ("all", "ingest")

    @property
    def processes(self) -> bool:
        return self.role in ("all", "process")

    @property
    def output(self) -> OutputSettings:
        return OutputSettings(
            self.output_dir,
            f"w{self.web_port}",
            self.rotate_max_bytes,
            self.rotate_max_age_s,
            self.flush_interval_s,
            self.finish_idle_s,
        )

    def filter_rules(self) -> FilterConfig:
        """The stream's rules: the `filters` section, the `selection` (parameters, countries, bbox) and `indices`."""
        return FilterConfig.from_dict(
            {
                **self.filters,
                "parameters": list(self.parameters),
                "countries": list(self.countries),
                "bbox": list(self.bbox) if self.bbox else None,
                "indices": self.indices,
            }
        )

    def public(self) -> dict[str, Any]:
        """What status pages may show: everything but the key."""
        return {
            "app_id": self.app_id,
            "role": self.role,
            "broker": self.broker,
            "kafka": {
                **self.kafka_security.public(),
                "replication_factor": self.replication_factor or "auto",
                "min_insync_replicas": self.min_insync_replicas or "auto",
            },
            "partitions": self.partitions,
            "web_port": self.web_port,
            "data_dir": str(self.data_dir),
            "output_dir": str(self.output_dir),
            "openaq_base_url": self.base_url,
            "using_simulator": self.using_simulator,
            "api_key_set": not self.using_simulator,
            "web_token_set": bool(self.web_token),
            "poll_interval_s": self.poll_interval_s,
            "parameters": list(self.parameters),
        }


def _field_path(error: ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        parts.append(extra[0] if extra else "?")
        return ".".join(parts)
    if error.validator == "required":
        return ".".join(parts)
    return ".".join(parts) or "(top level)"


def _describe(error: ValidationError) -> str:
    where = _field_path(error)
    if error.validator == "additionalProperties" and where in {f"kafka.{key}" for key in KAFKA_SECRET_KEYS}:
        return f"{where}: not allowed here: set AIRQ_KAFKA_PASSWORD in the environment or .env"
    if error.validator == "additionalProperties":
        return f"{where}: unknown key"
    if error.validator == "oneOf":
        expected = "null or [minLon, minLat, maxLon, maxLat]"
        return f"{where}: {json.dumps(error.instance)} is not a valid value (expected {expected})"
    return f"{where}: {error.message}"


def load_pipeline(path: Path) -> dict[str, Any]:
    """Read and validate a pipeline file; return it merged over the defaults."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"pipeline file {path} not found (set AIRQ_PIPELINE or create it)") from exc
    except OSError as exc:
        raise ConfigError(f"pipeline file {path} cannot be read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"pipeline file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        raise ConfigError(f"{path}: {_describe(error)}")
    merged = {section: dict(values) for section, values in DEFAULTS.items()}
    for section, values in data.items():
        if isinstance(values, dict):
            merged[section].update(values)
    return merged


def _env_int(env: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {raw!r} is not an integer") from exc
    if not low <= value <= high:
        raise ConfigError(f"{name}: {value} is out of range ({low}..{high})")
    return value


def _env_float(env: dict[str, str], name: str, low: float) -> float | None:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}: {raw!r} is not a number") from exc
    if not math.isfinite(value):
        raise ConfigError(f"{name}: {raw!r} is not a finite number")
    if not value >= low:
        raise ConfigError(f"{name}: {value} must be at least {low}")
    return value


def broker_urls(broker: str) -> list[str]:
    """One `kafka://host:port` URL per server of a comma- (or semicolon-) separated bootstrap list."""
    urls = []
    for item in broker.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        scheme, sep, rest = item.partition("://")
        urls.append(item if sep else f"kafka://{scheme}")
    return urls


def _broker(raw: str) -> str:
    urls = broker_urls(raw)
    if not urls:
        raise ConfigError(f"AIRQ_BROKER: {raw!r} names no server (expected kafka://host:port[,host:port...])")
    for url in urls:
        scheme, _, address = url.partition("://")
        host, _, port = address.rstrip("/").rpartition(":")
        if scheme not in ("kafka", "aiokafka") or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"AIRQ_BROKER: {url!r} is not kafka://host:port")
    return raw.strip() if "://" in raw else f"kafka://{raw.strip()}"


def _kafka_count(env: dict[str, str], name: str, section: dict[str, Any], key: str) -> int | None:
    """A replication setting: "auto" (None) or a count from 1 to 32, from the environment or pipeline.json."""
    raw = env.get(name)
    if raw in (None, ""):
        value = section.get(key, "auto")
        return None if value == "auto" else int(value)
    if raw.strip().lower() == "auto":
        return None
    return _env_int(env, name, 1, 32)


def _kafka_settings(env: dict[str, str], section: dict[str, Any], pipeline_path: Path) -> dict[str, Any]:
    try:
        security = KafkaSecurity.from_settings(env, section)
    except KafkaConfigError as exc:
        raise ConfigError(str(exc).replace("pipeline.json", str(pipeline_path))) from None
    rf = _kafka_count(env, "AIRQ_KAFKA_REPLICATION_FACTOR", section, "replication_factor")
    min_isr = _kafka_count(env, "AIRQ_KAFKA_MIN_INSYNC_REPLICAS", section, "min_insync_replicas")
    if rf is not None and min_isr is not None and min_isr > rf:
        raise ConfigError(
            f"kafka.min_insync_replicas: {min_isr} is more than the replication factor {rf}: every write would fail"
        )
    timeout = _env_float(env, "AIRQ_KAFKA_PRODUCER_TIMEOUT_S", 1.0) or float(section["producer_request_timeout_s"])
    return {
        "kafka_security": security,
        "replication_factor": rf,
        "min_insync_replicas": min_isr,
        "producer_request_timeout_s": timeout,
    }


def is_loopback(bind: str) -> bool:
    """Whether a web bind address reaches only this machine: 127.0.0.0/8, ::1 or `localhost`."""
    host = bind.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or an empty bind (every interface)


def _web_token(env: dict[str, str], web_bind: str) -> str:
    """AIRQ_WEB_TOKEN: optional on loopback, required when the web port is bound beyond it."""
    token = (env.get("AIRQ_WEB_TOKEN") or "").strip()  # a quoted .env value may end in a newline
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        # Never echo the token: it is a secret. Headers carry printable ASCII only.
        raise ConfigError("AIRQ_WEB_TOKEN: contains spaces, control or non-ASCII characters (check the .env quoting)")
    if not token and not is_loopback(web_bind):
        raise ConfigError(
            f"AIRQ_WEB_TOKEN: required when the web server listens beyond loopback (web bind {web_bind!r}): "
            "set a token, or bind 127.0.0.1"
        )
    return token


def _indices(section: dict[str, Any], pipeline_path: Path) -> IndexConfig:
    """The `indices` section; an unknown index id stops start-up with one line naming the country."""
    try:
        return IndexConfig.from_dict(section)
    except ValueError as exc:
        raise ConfigError(f"{pipeline_path}: indices.{exc}") from None


def load_settings(env: dict[str, str] | None = None, dotenv: bool = True) -> Settings:
    """Build the settings from pipeline.json and the environment (and `.env`, which never overrides)."""
    if env is None:
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        env = dict(os.environ)
    pipeline_path = Path(env.get("AIRQ_PIPELINE") or "pipeline.json")
    p = load_pipeline(pipeline_path)

    web_port = _env_int(env, "AIRQ_WEB_PORT", 1, 65535) or 6066
    web_bind = env.get("AIRQ_WEB_BIND") or p["app"]["web_bind"]
    web_token = _web_token(env, web_bind)
    role = env.get("AIRQ_ROLE") or "all"
    if role not in ROLES:
        raise ConfigError(f"AIRQ_ROLE: {role!r} is not one of {', '.join(ROLES)}")
    broker = _broker(env.get("AIRQ_BROKER") or "kafka://127.0.0.1:9092")
    poll_interval = _env_float(env, "AIRQ_POLL_INTERVAL", 1.0) or float(p["openaq"]["poll_interval_s"])

    api_key = (env.get("OPENAQ_API_KEY") or "").strip()  # a quoted .env value may end in a newline
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in api_key):
        # Never echo the key: it is a secret, and its text is what is wrong.
        raise ConfigError("OPENAQ_API_KEY: contains spaces or control characters (check the .env quoting)")
    using_simulator = not api_key
    if using_simulator:
        base_url = env.get("OPENAQ_BASE_URL") or f"http://127.0.0.1:{p['simulator']['port']}"
        api_key = SIMULATOR_KEY
    else:
        base_url = env.get("OPENAQ_BASE_URL") or p["openaq"]["base_url"]
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"OPENAQ_BASE_URL: {base_url!r} is not an http(s) URL")

    bbox = p["selection"]["bbox"]
    if bbox is not None and not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise ConfigError(f"{pipeline_path}: selection.bbox: expected [minLon, minLat, maxLon, maxLat], got {bbox}")
    if p["openaq"]["requests_per_minute"] > p["openaq"]["requests_per_hour"]:
        raise ConfigError(f"{pipeline_path}: openaq.requests_per_minute: larger than requests_per_hour")

    settings = Settings(
        app_id=p["app"]["id"],
        partitions=int(p["app"]["partitions"]),
        standby_replicas=int(p["app"]["standby_replicas"]),
        web_bind=web_bind,
        web_port=web_port,
        role=role,
        broker=broker,
        data_dir=Path(env.get("AIRQ_DATA_DIR") or f"data/worker-{web_port}"),
        output_dir=Path(env.get("AIRQ_OUTPUT_DIR") or "output"),
        pipeline_path=pipeline_path,
        base_url=base_url.rstrip("/"),
        api_key=api_key,
        using_simulator=using_simulator,
        poll_interval_s=poll_interval,
        requests_per_minute=int(p["openaq"]["requests_per_minute"]),
        requests_per_hour=int(p["openaq"]["requests_per_hour"]),
        timeout_s=float(p["openaq"]["timeout_s"]),
        max_retries=int(p["openaq"]["max_retries"]),
        locations_refresh_hours=float(p["openaq"]["locations_refresh_hours"]),
        lookback_hours=int(p["openaq"]["lookback_hours"]),
        page_limit=int(p["openaq"]["page_limit"]),
        first_sight_lookback_hours=int(p["openaq"]["first_sight_lookback_hours"]),
        gap_retry_minutes=float(p["openaq"]["gap_retry_minutes"]),
        simulator_port=int(p["simulator"]["port"]),
        simulator_locations=int(p["simulator"]["locations"]),
        simulator_seed=int(p["simulator"]["seed"]),
        parameters=tuple(p["selection"]["parameters"]),
        countries=tuple(p["selection"]["countries"]),
        bbox=tuple(bbox) if bbox is not None else None,
        location_ids=tuple(p["selection"]["location_ids"]),
        filters=dict(p["filters"]),
        dedup_retention_hours=float(p["dedup"].get("retention_hours") or p["dedup"]["retention_days"] * 24),
        rotate_max_bytes=int(p["output"]["rotate_max_bytes"]),
        rotate_max_age_s=float(p["output"]["rotate_max_age_s"]),
        flush_interval_s=float(p["output"]["flush_interval_s"]),
        finish_idle_s=float(p["output"]["finish_idle_s"]),
        session_timeout_s=float(p["app"]["session_timeout_s"]),
        topic_prefix=env.get("AIRQ_TOPIC_PREFIX") or "",
        **_kafka_settings(env, p["kafka"], pipeline_path),
        indices=_indices(p["indices"], pipeline_path),
        web_token=web_token,
    )
    # No rule ties the de-duplication retention to filters.max_age_hours: a measurement older than its sensor's
    # de-duplication window is dropped as too_old whatever max_age_hours allows, and max_age_hours does not apply to
    # backfilled history (airq_app.domain.decide).
    try:
        settings.filter_rules()
    except ValueError as exc:
        raise ConfigError(f"{pipeline_path}: {exc}") from None
    return settings
