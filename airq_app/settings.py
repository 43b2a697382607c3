"""Settings: each declared once here, in one typed section per concern, read from `pipeline.json` and the environment.

A field of a section says its name, type, default, environment variable, pipeline.json key, range and meaning
(`airq_app.settings_fields.setting`); the file's JSON schema, the defaults and the reading of the environment all
come from those declarations, and no component keeps a default of its own. `pipeline.schema.json` is the schema
written out for editors (`python -m airq_app.settings` writes it; a unit test keeps it current). The environment
wins over the file, `.env` is read too but never overrides a real variable, and a bad file or variable raises
`ConfigError` with one line naming the field and the problem.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dotenv import load_dotenv

from airq_app.domain.filters import FilterConfig
from airq_app.domain.indices import IndexConfig
from airq_app.kafka.security import MECHANISMS, PROTOCOLS, KafkaConfigError, KafkaSecurity
from airq_app.settings_fields import ConfigError, Declarations, dump_json, read_sections, setting

SCHEMA_PATH = Path(__file__).with_name("pipeline.schema.json")
ROLES = ("all", "ingest", "process")
SIMULATOR_KEY = "airq-simulator"  # the simulator accepts any key; this one marks simulator mode
# The stream's rules keep their defaults in the domain (`FilterConfig`, `IndexConfig`); the declarations read them.
_RULES = FilterConfig()
_INDICES = IndexConfig()


def is_loopback(bind: str) -> bool:
    """Whether a web bind address reaches only this machine: 127.0.0.0/8, ::1 or `localhost`."""
    host = bind.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or an empty bind (every interface)


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
        raise ValueError(f"{raw!r} names no server (expected kafka://host:port[,host:port...])")
    for url in urls:
        scheme, _, address = url.partition("://")
        host, _, port = address.rstrip("/").rpartition(":")
        if scheme not in ("kafka", "aiokafka") or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{url!r} is not kafka://host:port")
    return raw if "://" in raw else f"kafka://{raw}"


def _api_key(key: str) -> str:
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in key):
        # Never echo the key: it is a secret, and its text is what is wrong.
        raise ValueError("contains spaces or control characters (check the .env quoting)")
    return key


def _web_token(token: str) -> str:
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        # Never echo the token: it is a secret. Headers carry printable ASCII only.
        raise ValueError("contains spaces, control or non-ASCII characters (check the .env quoting)")
    return token


def _url(url: str) -> str:
    return url.rstrip("/")


def _own_host(sections: Mapping[str, Any]) -> str:
    return "127.0.0.1" if sections["web"].bind in ("127.0.0.1", "localhost") else os.uname().nodename


@dataclass(frozen=True)
class AppSettings:
    """The worker and its consumer group."""

    id: str = setting("airq", "Consumer group and table names.", pattern="^[A-Za-z0-9_.-]+$", min_length=1)
    partitions: int = setting(
        8, "Partitions of every topic: the most workers that can share the work.", minimum=1, maximum=256
    )
    standby_replicas: int = setting(1, "Standby copies of each table partition.", minimum=0, maximum=8)
    session_timeout_s: float = setting(
        30.0, "How long a crashed worker keeps its partitions before the group moves them.", minimum=6, maximum=300
    )
    role: str = setting(
        "all", "all, ingest (poll only) or process (stream only).", env="AIRQ_ROLE", file=False, choices=ROLES
    )
    data_dir: Path = setting(
        None,
        "This worker's RocksDB state; unset: data/worker-<web port>.",
        env="AIRQ_DATA_DIR",
        file=False,
        derive=lambda s: Path(f"data/worker-{s['web'].port}"),
    )
    pipeline: Path = setting(Path("pipeline.json"), "The pipeline file.", env="AIRQ_PIPELINE", file=False)
    topic_prefix: str = setting(
        "", "Namespaces the topics; only for isolated test pipelines.", env="AIRQ_TOPIC_PREFIX", file=False
    )

    @property
    def polls(self) -> bool:
        return self.role in ("all", "ingest")

    @property
    def processes(self) -> bool:
        return self.role in ("all", "process")


@dataclass(frozen=True)
class WebSettings:
    """The worker's web server, and how workers reach each other's."""

    port: int = setting(6066, "This worker's web port.", env="AIRQ_WEB_PORT", file=False, minimum=1, maximum=65535)
    bind: str = setting(
        "127.0.0.1", "Interface the web server listens on.", env="AIRQ_WEB_BIND", file="app.web_bind", min_length=1
    )
    host: str = setting(
        None,
        "The host other workers reach this one at; unset: 127.0.0.1 when bound there, else the machine's name.",
        env="AIRQ_WEB_HOST",
        file=False,
        derive=_own_host,
    )
    # Required by every endpoint but /airq/health when set (airq_app.web.auth); never in repr, logs or status.
    token: str = setting(
        "",
        "Token every endpoint but /airq/health wants; required when bound beyond loopback.",
        env="AIRQ_WEB_TOKEN",
        file=False,
        secret=True,
        check=_web_token,
    )
    peer_hosts: tuple[str, ...] = setting(
        None,
        "Hosts the overview may ask for their locations (comma-separated); unset: this worker's host and loopback.",
        env="AIRQ_PEER_HOSTS",
        file=False,
        derive=lambda s: tuple(dict.fromkeys((s["web"].host, "127.0.0.1", "localhost"))),
    )


@dataclass(frozen=True)
class OpenAQSettings:
    """The OpenAQ API the poller reads, and the client's budget."""

    # Never printed: repr, logs and status leave it out. Without one, the simulator is polled (SIMULATOR_KEY).
    api_key: str = setting(
        "",
        "OpenAQ v3 key, sent as X-API-Key; unset: the simulator.",
        env="OPENAQ_API_KEY",
        file=False,
        secret=True,
        check=_api_key,
    )
    base_url: str = setting(
        "https://api.openaq.org",
        "Any OpenAQ-v3-compatible server; without a key, the simulator unless OPENAQ_BASE_URL is set.",
        env="OPENAQ_BASE_URL",
        pattern="^https?://",
        expected="an http(s) URL",
        check=_url,
    )
    poll_interval_s: float = setting(
        60.0, "Seconds between polling cycles.", env="AIRQ_POLL_INTERVAL", minimum=1, maximum=86400
    )
    requests_per_minute: int = setting(60, "The client's budget (a free key allows 60).", minimum=1, maximum=100000)
    requests_per_hour: int = setting(2000, "The client's budget (a free key allows 2,000).", minimum=1, maximum=1000000)
    timeout_s: float = setting(15.0, "Read timeout of one request.", exclusive_minimum=0, maximum=600)
    max_retries: int = setting(5, "Retries of a failed request.", minimum=0, maximum=20)
    locations_refresh_hours: float = setting(
        6.0, "Age of the cached location index before it is fetched again.", minimum=0.01, maximum=168
    )
    lookback_hours: int = setting(24, "How far back the poller fills missed hours.", minimum=1, maximum=720)
    first_sight_lookback_hours: int = setting(
        0, "Hours before a sensor's first value that are fetched too.", minimum=0, maximum=720
    )
    gap_retry_minutes: float = setting(10.0, "Wait before asking again for a missing hour.", minimum=0.01, maximum=1440)
    page_limit: int = setting(1000, "Results per page.", minimum=1, maximum=1000)

    @property
    def using_simulator(self) -> bool:
        return self.api_key == SIMULATOR_KEY


@dataclass(frozen=True)
class SimulatorSettings:
    """The OpenAQ simulator `make run` starts when no key is set."""

    port: int = setting(8765, "The simulator's port.", minimum=1, maximum=65535)
    locations: int = setting(200, "Simulated locations.", minimum=1, maximum=20000)
    seed: int = setting(1, "Seed of the simulated world.")


@dataclass(frozen=True)
class SelectionSettings:
    """Which measurements the pipeline is about (`airq_app.domain.selection`)."""

    parameters: tuple[str, ...] = setting(
        _RULES.parameters, "Parameters polled and kept.", pattern="^[a-z0-9_.]+$", min_items=1, unique=True
    )
    countries: tuple[str, ...] = setting(
        (), "ISO 3166 alpha-2 codes; empty: every country.", pattern="^[A-Z]{2}$", unique=True
    )
    bbox: tuple[float, float, float, float] | None = setting(
        None,
        "[minLon, minLat, maxLon, maxLat]; null: anywhere.",
        minimum=-180,
        maximum=180,
        expected="[minLon, minLat, maxLon, maxLat]",
    )
    location_ids: tuple[int, ...] = setting((), "Location ids; empty: every location.", minimum=1, unique=True)


@dataclass(frozen=True)
class FilterSettings:
    """The stream's data-quality rules (`airq_app.domain.filters`, which holds their defaults)."""

    sentinels: tuple[float, ...] = setting(_RULES.sentinels, "Raw values meaning 'not reporting'; dropped.")
    drop_negative: bool = setting(_RULES.drop_negative, "Drop values below 0.")
    plausible_max: Mapping[str, float] = setting(
        _RULES.plausible_max, "Largest plausible value per parameter; merged over the defaults.", exclusive_minimum=0
    )
    max_future_skew_s: float = setting(
        _RULES.max_future_skew_s, "Drop measurements this far ahead of now.", minimum=0, maximum=86400
    )
    max_age_hours: float = setting(
        _RULES.max_age_hours, "Drop measurements this old (not backfilled ones).", exclusive_minimum=0, maximum=8760
    )
    stuck_hours: int = setting(
        _RULES.stuck_hours, "Flag a sensor whose last this many hourly values are equal.", minimum=2, maximum=168
    )


@dataclass(frozen=True)
class DedupSettings:
    """How long the stream remembers a sensor's hours to drop repeats."""

    retention_days: float = setting(400.0, "Remembered days.", minimum=1, maximum=3660)
    retention_hours: float | None = setting(
        None, "Remembered hours; takes precedence over retention_days.", minimum=1, maximum=87840
    )

    @property
    def window_hours(self) -> float:
        return self.retention_hours or self.retention_days * 24


@dataclass(frozen=True)
class OutputSettings:
    """The JSON Lines output (`airq_app.sink`)."""

    directory: Path = setting(Path("output"), "Where JSON output goes.", env="AIRQ_OUTPUT_DIR", file=False)
    rotate_max_bytes: int = setting(
        16 * 1024 * 1024, "A file is finished at this size.", minimum=1024, maximum=17179869184
    )
    rotate_max_age_s: float = setting(10.0, "A file is finished at this age.", minimum=0.1, maximum=86400)
    flush_interval_s: float = setting(1.0, "Seconds between flushes of the open files.", minimum=0.01, maximum=60)
    finish_idle_s: float = setting(
        0.25,
        "A caught-up partition's file is finished after this long without a record; 0: off.",
        minimum=0,
        maximum=86400,
    )


@dataclass(frozen=True)
class KafkaSettings:
    """The brokers, how every Kafka client airq opens connects to them, and the copies of each topic."""

    broker: str = setting(
        "kafka://127.0.0.1:9092",
        "Kafka bootstrap, e.g. kafka://h1:9092,h2:9092.",
        env="AIRQ_BROKER",
        file=False,
        check=_broker,
    )
    replication_factor: int | None = setting(
        None,
        "Copies of every topic airq creates; auto: min(3, brokers) (airq_app.kafka.replication).",
        env="AIRQ_KAFKA_REPLICATION_FACTOR",
        auto="auto",
        minimum=1,
        maximum=32,
    )
    min_insync_replicas: int | None = setting(
        None,
        "min.insync.replicas of those topics; auto: min(2, copies).",
        env="AIRQ_KAFKA_MIN_INSYNC_REPLICAS",
        auto="auto",
        minimum=1,
        maximum=32,
    )
    security_protocol: str = setting(
        "PLAINTEXT",
        "How every Kafka client connects.",
        env="AIRQ_KAFKA_SECURITY_PROTOCOL",
        choices=PROTOCOLS,
        check=lambda v: v.upper().replace("-", "_"),
    )
    sasl_mechanism: str | None = setting(
        None,
        "SASL mechanism.",
        env="AIRQ_KAFKA_SASL_MECHANISM",
        choices=MECHANISMS,
        check=lambda v: v.upper().replace("_", "-"),
    )
    username: str | None = setting(None, "SASL user.", env="AIRQ_KAFKA_USERNAME", min_length=1)
    # Only from the environment; never in repr, logs, status or output.
    password: str | None = setting(
        None,
        "SASL password.",
        env="AIRQ_KAFKA_PASSWORD",
        file=False,
        secret=True,
        strip=False,
        aliases=("sasl_password", "sasl_plain_password"),
    )
    ca_file: str | None = setting(
        None, "PEM bundle of the CAs to trust; unset: the system's.", env="AIRQ_KAFKA_CA_FILE", min_length=1
    )
    cert_file: str | None = setting(
        None, "Client certificate (PEM), for mutual TLS.", env="AIRQ_KAFKA_CERT_FILE", min_length=1
    )
    key_file: str | None = setting(None, "Its unencrypted key (PEM).", env="AIRQ_KAFKA_KEY_FILE", min_length=1)
    # Faust's own producer timeout; airq's producer retries after it instead of giving up (airq_app.kafka).
    producer_request_timeout_s: float = setting(
        1200.0,
        "The producer's request timeout, after which it retries a send.",
        env="AIRQ_KAFKA_PRODUCER_TIMEOUT_S",
        minimum=1,
        maximum=86400,
    )
    # The fields above, checked and ready for every client (built by load_settings); its repr leaves the password out.
    security: KafkaSecurity = field(default_factory=KafkaSecurity, repr=False, compare=False)

    @property
    def broker_urls(self) -> list[str]:
        """`broker` as one URL per bootstrap server (`kafka://h1:9092,h2:9092` -> two), as Faust takes them."""
        return broker_urls(self.broker)


@dataclass(frozen=True)
class IndexSettings:
    """Each location's national index: its country's default unless `by_country` says otherwise."""

    enabled: bool = setting(_INDICES.enabled, "false: no record gets a local_index.")
    by_country: Mapping[str, str | None] = setting(
        _INDICES.by_country, "ISO country code -> index id, or null for none.", key_pattern="^[A-Z]{2}$", min_length=1
    )


@dataclass(frozen=True)
class BackfillSettings:
    """Where `airq backfill` reads history."""

    archive_url: str = setting(
        "https://openaq-data-archive.s3.amazonaws.com",
        "Base URL of OpenAQ's archive layout; without a key, the simulator.",
        env="OPENAQ_ARCHIVE_URL",
        file=False,
        pattern="^https?://",
        expected="an http(s) URL",
        check=_url,
    )


SECTIONS: dict[str, type] = {
    "app": AppSettings,
    "web": WebSettings,
    "openaq": OpenAQSettings,
    "simulator": SimulatorSettings,
    "selection": SelectionSettings,
    "filters": FilterSettings,
    "dedup": DedupSettings,
    "output": OutputSettings,
    "kafka": KafkaSettings,
    "indices": IndexSettings,
    "backfill": BackfillSettings,
}


@dataclass(frozen=True)
class Settings:
    """Every section, as `load_settings` builds it; `sources` says where each value came from
    (`output.finish_idle_s` -> a variable, a file key or "default"). `Settings()` holds the declared defaults but
    not the derived ones (`app.data_dir`, `web.host`, `web.peer_hosts`), which need the other sections."""

    app: AppSettings = field(default_factory=AppSettings)
    web: WebSettings = field(default_factory=WebSettings)
    openaq: OpenAQSettings = field(default_factory=OpenAQSettings)
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    filters: FilterSettings = field(default_factory=FilterSettings)
    dedup: DedupSettings = field(default_factory=DedupSettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    indices: IndexSettings = field(default_factory=IndexSettings)
    backfill: BackfillSettings = field(default_factory=BackfillSettings)
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def from_environment(self, path: str) -> bool:
        """Whether a setting (`openaq.base_url`) was given by its environment variable."""
        return self.sources.get(path, "default") == DECLARED[path].rules.env

    def filter_rules(self) -> FilterConfig:
        """The stream's rules: the `filters` section, the `selection` (parameters, countries, bbox) and `indices`."""
        return FilterConfig.from_dict(
            {
                "sentinels": list(self.filters.sentinels),
                "drop_negative": self.filters.drop_negative,
                "plausible_max": dict(self.filters.plausible_max),
                "max_future_skew_s": self.filters.max_future_skew_s,
                "max_age_hours": self.filters.max_age_hours,
                "stuck_hours": self.filters.stuck_hours,
                "parameters": list(self.selection.parameters),
                "countries": list(self.selection.countries),
                "bbox": list(self.selection.bbox) if self.selection.bbox else None,
                "indices": {"enabled": self.indices.enabled, "by_country": dict(self.indices.by_country)},
            }
        )

    def public(self) -> dict[str, Any]:
        """What status pages may show: no key, token or password."""
        return {
            "app_id": self.app.id,
            "role": self.app.role,
            "broker": self.kafka.broker,
            "kafka": {
                **self.kafka.security.public(),
                "replication_factor": self.kafka.replication_factor or "auto",
                "min_insync_replicas": self.kafka.min_insync_replicas or "auto",
            },
            "partitions": self.app.partitions,
            "web_port": self.web.port,
            "data_dir": str(self.app.data_dir),
            "output_dir": str(self.output.directory),
            "openaq_base_url": self.openaq.base_url,
            "using_simulator": self.openaq.using_simulator,
            "api_key_set": not self.openaq.using_simulator,
            "web_token_set": bool(self.web.token),
            "poll_interval_s": self.openaq.poll_interval_s,
            "parameters": list(self.selection.parameters),
        }


DECLARED = Declarations(SECTIONS, "airq pipeline settings")


def pipeline_keys() -> frozenset[str]:
    """Every key pipeline.json may hold, as `section.key`."""
    return frozenset(DECLARED.file_keys)


def load_pipeline(path: Path) -> dict[str, Any]:
    """Read a pipeline file and check it against the declarations' schema."""
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
    DECLARED.check(data, str(path))
    return data


# KafkaSecurity's fields and the `kafka` settings they come from.
_SECURITY_FIELDS = {
    "protocol": "security_protocol",
    "mechanism": "sasl_mechanism",
    "username": "username",
    "password": "password",
    "ca_file": "ca_file",
    "cert_file": "cert_file",
    "key_file": "key_file",
}


def _kafka_security(kafka: KafkaSettings, sources: Mapping[str, str]) -> KafkaSecurity:
    """The Kafka section's TLS and SASL fields, checked together; an error names where each value came from, or
    the variable that would set it."""
    names: dict[str, str] = {}
    for attr, name in _SECURITY_FIELDS.items():
        source = sources.get(f"kafka.{name}", "default")
        names[attr] = str(DECLARED[f"kafka.{name}"].rules.env) if source == "default" else source
    try:
        return KafkaSecurity(**{attr: getattr(kafka, name) for attr, name in _SECURITY_FIELDS.items()}, sources=names)
    except KafkaConfigError as exc:
        raise ConfigError(str(exc)) from None


def read_kafka_security(env: Mapping[str, str], section: Mapping[str, Any] | None = None) -> KafkaSecurity:
    """The Kafka security of these variables over this `kafka` section of pipeline.json, checked as
    `load_settings` checks them (for tools and tests that need no other setting)."""
    data = {"kafka": dict(section or {})}
    DECLARED.check(data, "pipeline.json")
    sections, sources = read_sections({"kafka": KafkaSettings}, data, env, "pipeline.json")
    return _kafka_security(sections["kafka"], sources)


def _check_together(s: Settings, pipeline: Path) -> None:
    """The rules that tie several settings together."""
    if not s.web.token and not is_loopback(s.web.bind):
        raise ConfigError(
            f"AIRQ_WEB_TOKEN: required when the web server listens beyond loopback (web bind {s.web.bind!r}): "
            "set a token, or bind 127.0.0.1"
        )
    bbox = s.selection.bbox
    if bbox is not None and not (bbox[0] < bbox[2] and bbox[1] < bbox[3]):
        raise ConfigError(f"{pipeline}: selection.bbox: expected [minLon, minLat, maxLon, maxLat], got {list(bbox)}")
    if s.openaq.requests_per_minute > s.openaq.requests_per_hour:
        raise ConfigError(f"{pipeline}: openaq.requests_per_minute: larger than requests_per_hour")
    rf, min_isr = s.kafka.replication_factor, s.kafka.min_insync_replicas
    if rf is not None and min_isr is not None and min_isr > rf:
        raise ConfigError(
            f"kafka.min_insync_replicas: {min_isr} is more than the replication factor {rf}: every write would fail"
        )
    try:
        IndexConfig.from_dict({"enabled": s.indices.enabled, "by_country": dict(s.indices.by_country)})
    except ValueError as exc:
        raise ConfigError(f"{pipeline}: indices.{exc}") from None
    # No rule ties the de-duplication retention to filters.max_age_hours: a measurement older than its sensor's
    # de-duplication window is dropped as too_old whatever max_age_hours allows, and max_age_hours does not apply to
    # backfilled history (airq_app.domain.decide).
    try:
        s.filter_rules()
    except ValueError as exc:
        raise ConfigError(f"{pipeline}: {exc}") from None


def load_settings(env: Mapping[str, str] | None = None, dotenv: bool = True) -> Settings:
    """The settings from pipeline.json and the environment (and `.env`, which never overrides)."""
    if env is None:
        if dotenv:
            load_dotenv(Path.cwd() / ".env", override=False)
        env = dict(os.environ)
    pipeline: Path = DECLARED.environment_value("app.pipeline", env)
    sections, sources = DECLARED.read(load_pipeline(pipeline), env, str(pipeline))
    openaq: OpenAQSettings = sections["openaq"]
    if not openaq.api_key:
        # Simulator mode: the simulator's URL unless OPENAQ_BASE_URL says otherwise, and its archive for backfill.
        given = sources["openaq.base_url"] == DECLARED["openaq.base_url"].rules.env
        base_url = openaq.base_url if given else f"http://127.0.0.1:{sections['simulator'].port}"
        sections["openaq"] = replace(openaq, api_key=SIMULATOR_KEY, base_url=base_url)
        if sources["backfill.archive_url"] == "default":
            sections["backfill"] = replace(sections["backfill"], archive_url=base_url)
    sections["kafka"] = replace(sections["kafka"], security=_kafka_security(sections["kafka"], sources))
    settings = Settings(**sections, sources=sources)
    _check_together(settings, pipeline)
    return settings


if __name__ == "__main__":
    # Writes pipeline.schema.json from the declarations (a unit test fails while it is out of date).
    SCHEMA_PATH.write_text(dump_json(DECLARED.schema) + "\n", encoding="utf-8")
    print(f"wrote {SCHEMA_PATH}", file=sys.stderr)
