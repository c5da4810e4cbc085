"""The one settings object: validated at start-up, passed in, never a global.

Sources, highest priority first: keyword arguments (tests), environment variables
(``PIPESENTINEL_*``, nested with ``__``, e.g. ``PIPESENTINEL_STORAGE__BACKEND=influxdb``), a TOML
file (``PIPESENTINEL_CONFIG``, default ``pipesentinel.toml`` if present), then the defaults below,
which are the embedded development setup (in-process broker, SQLite under ``var/``).
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipesentinel.detection.gases import DEFAULT_LEL_BASIS, LelBasis
from pipesentinel.notification_settings import NotificationSettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SITE_DIR = REPO_ROOT / "sites" / "wanli"

# The development-only secret from which simulated device passwords are derived. Refused outside
# development (see Settings._refuse_placeholder_secrets).
DEVELOPMENT_DEVICE_SECRET = "pipesentinel-development-only-device-secret"  # noqa: S105


class Environment(StrEnum):
    """Where the service runs; development allows the embedded defaults and placeholder secrets."""

    DEVELOPMENT = "development"
    PRODUCTION = "production"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Section):
    """MQTT broker. No ``url`` means an embedded in-process broker (development only)."""

    url: str | None = Field(default=None, description="mqtt://host:port or mqtts://host:port")
    username: str | None = None
    password: SecretStr | None = None
    client_id: str = "pipesentinel-ingest"
    ca_file: Path | None = None
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    reconnect_min_delay_s: float = Field(default=0.5, gt=0)
    reconnect_max_delay_s: float = Field(default=30.0, gt=0)


class StorageSettings(_Section):
    """Telemetry store: embedded SQLite (default) or InfluxDB (1.x API, or 2.x/3.x v1 compat)."""

    backend: Literal["sqlite", "influxdb"] = "sqlite"
    sqlite_path: Path = Path("var/telemetry.sqlite3")
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "pipesentinel"
    influx_username: str | None = None
    influx_password: SecretStr | None = None
    influx_timeout_s: float = Field(default=10.0, gt=0)
    frames_dir: Path = Path("var/frames")
    frames_kept_per_channel: int = Field(default=20, ge=1)


class IngestSettings(_Section):
    """Validation limits, batching and recording of the MQTT edge.

    Batching: the writer takes a batch as soon as one message is queued, after waiting at most
    ``batch_linger_s`` for more (up to ``batch_max_messages``). A short linger keeps the latency
    of a lone message low (a reading at seed load waits ``batch_linger_s``, not a whole batch
    period); under load batches still fill, because messages accumulate while the writer commits
    the previous batch. ``batch_max_wait_s`` is only the writer's idle wake-up period (when it
    flushes the rejection log summary and checks for stop). ``record_path``: append every message
    received (raw, before validation) to this JSON-lines file (``docs/mqtt.md``, "Recording").
    """

    queue_capacity_messages: int = Field(default=2000, ge=10, le=65535)
    batch_max_messages: int = Field(default=500, ge=1)
    batch_max_wait_s: float = Field(default=0.2, gt=0)
    batch_linger_s: float = Field(default=0.005, ge=0)
    record_path: Path | None = None
    max_json_payload_bytes: int = Field(default=4096, ge=256)
    max_image_payload_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_future_skew_s: float = Field(default=300.0, ge=0)
    max_age_s: float = Field(default=7 * 24 * 3600.0, gt=0)
    dead_letter_path: Path = Path("var/dead_letter.sqlite3")
    log_every_nth_rejection: int = Field(default=100, ge=1)
    # CPU priority of the storing ingest when it runs in a child process of its own
    # (pipesentinel.ingest.workers.ServiceProcess): nice(2) increment. Detection is the safety
    # function and storage is not latency-critical (its persistent QoS 1 session keeps the
    # backlog at the broker, nothing is lost), so on a CPU-bound machine detection runs first
    # and storage catches up afterwards. 0: same priority (design choice; measured in
    # docs/architecture.md).
    storage_nice: int = Field(default=5, ge=0, le=19)


class AlarmSettings(_Section):
    """The alarm philosophy and where the alarm journal lives (``docs/alarm-lifecycle.md``)."""

    journal_path: Path = Path("var/alarm_journal.sqlite3")
    incidents_path: Path = Path("var/incidents.sqlite3")
    # Longest timed shelve: one 8-hour shift (a design choice; ISA-18.2 asks for a limit).
    max_shelve_s: float = Field(default=8 * 3600.0, gt=0)
    # EEMUA 191 / ISA-18.2: a flood is more than 10 annunciations in 10 minutes.
    flood_window_s: float = Field(default=600.0, gt=0)
    flood_start_above_count: int = Field(default=10, ge=1)
    flood_end_below_count: int = Field(default=5, ge=1)


class DetectionSettings(_Section):
    """How often the detection engine re-evaluates what does not arrive with readings."""

    tick_period_s: float = Field(default=1.0, gt=0)  # offline checks, shelve expiry, escalation
    localisation_interval_s: float = Field(default=10.0, gt=0)  # re-estimate open incidents
    camera_analytics: bool = True  # decode and analyse camera frames
    # Cameras that send no frame for 2 x frame_period_s are offline (off: frames are thinned,
    # e.g. by the accelerated demo, or the cameras send laser readings only).
    expect_frames: bool = True
    # Silence beyond 2 x the device's period plus this margin is OFFLINE (docs/health.md); an
    # accelerated clock (the demo) widens it by its speed-up, as network jitter is in wall time.
    offline_margin_s: float = Field(default=0.5, ge=0)
    # The detection process's own MQTT session (its feed, pipesentinel.ingest.workers): a client
    # id of its own, so the broker fans every device message out to it and to the storing ingest.
    mqtt_client_id: str = Field(default="pipesentinel-detection", min_length=1)
    # Most records given to the engine at once when submitted batches queue up (design choice:
    # about one second of issue 3's 100x load, so an operator action waits one such step).
    max_batch_records: int = Field(default=4000, ge=1)
    # Adaptive batching: under load the engine rests after each step so that it is busy at most
    # this fraction of the time; its cost is mostly per call (3-4 ms, measured with 20 records a
    # call: 4.7k records per CPU second; 500 a call: 18k), so under load the rest makes the
    # steps larger and cheaper and leaves the GIL to the feed. 1: never rest. 0.5 chosen by
    # bench/alarm_latency.py at 4000 msg/s (2-core VM, 2026-12-03; docs/architecture.md): 0.75
    # and 1 let the feed fall behind (p99 1.6-2 s); 0.3 saves 10-25 % of detection CPU but
    # nearly doubles the intake -> alarm p50 (36 -> 64 ms, storage here).
    max_busy_fraction: float = Field(default=0.5, gt=0, le=1)
    # QoS of the detection feed's subscription (pipesentinel.ingest.workers). 1: a persistent
    # MQTT 5 session acknowledged once detection has the batch, so detection also sees what was
    # published while it was away. 0: a clean MQTT 3.1.1 session, no acknowledgements, no
    # MQTT 5 properties: about half the feed's MQTT cost per message (measured, see
    # docs/architecture.md), but readings published while the feed is disconnected never reach
    # detection (the storing ingest, always QoS 1, keeps them).
    feed_qos: Literal[0, 1] = 0


class ResponseSettings(_Section):
    """The emergency response to incidents (plans/, docs/response.md)."""

    enabled: bool = True  # answer incident updates (valves, zones, people, plan, public alert)
    responses_path: Path = Path("var/responses.sqlite3")
    plan_decisions_path: Path = Path("var/plan_decisions.sqlite3")
    # Escalation policy (site policy, not physics; docs/response.md): a confirmed incident is
    # major at this median gas release, or with this many detection zones reading gas at once.
    major_rate_kg_per_s: float = Field(default=3.0, gt=0)
    major_active_zones: int = Field(default=3, ge=1)
    # The CAP <sender> (no spaces, commas, < or &) and <senderName>; None: derived from the site.
    cap_sender_id: str | None = Field(default=None, pattern=r"^[^\s,<&]+$")
    cap_sender_name: str | None = None
    # CAP <status>: Actual alerts only in production unless set (an exercise says so).
    cap_status: Literal["Actual", "Exercise", "Test"] | None = None


class ApiSettings(_Section):
    """The HTTP API (``pipesentinel.api``, ``docs/api.md``): tokens, audit log, bind, limits."""

    # Bearer tokens, stored hashed (SHA-256) with name and role; minted by pipesentinel.api.auth.
    tokens_path: Path = Path("var/api_tokens.json")
    audit_path: Path = Path("var/api_audit.sqlite3")  # append-only audit log of every write
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Page limits (design choices): most items one list answer holds, most history points.
    max_page_items: int = Field(default=500, ge=1)
    max_history_points: int = Field(default=2000, ge=1)
    # Longest history range one request may ask for: 31 days (design choice) [s].
    max_history_range_s: float = Field(default=31 * 24 * 3600.0, gt=0)
    # How far back "latest readings" look for a device's newest values (design choice) [s].
    latest_lookback_s: float = Field(default=60.0, gt=0)
    # WebSocket stream: messages waiting per client before that client is dropped as too slow
    # (design choice: a few seconds of issue 3's 100x load in batches).
    stream_queue_messages: int = Field(default=256, ge=1)


class Settings(BaseSettings):
    """All PipeSentinel settings."""

    model_config = SettingsConfigDict(
        env_prefix="PIPESENTINEL_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    site_dir: Path = DEFAULT_SITE_DIR
    device_secret: SecretStr = SecretStr(DEVELOPMENT_DEVICE_SECRET)
    lel_basis: LelBasis = DEFAULT_LEL_BASIS  # every %LEL shown says which basis it is on
    broker: BrokerSettings = BrokerSettings()
    storage: StorageSettings = StorageSettings()
    ingest: IngestSettings = IngestSettings()
    alarms: AlarmSettings = AlarmSettings()
    detection: DetectionSettings = DetectionSettings()
    notifications: NotificationSettings = NotificationSettings()
    response: ResponseSettings = ResponseSettings()
    api: ApiSettings = ApiSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - signature set by pydantic-settings
        file_secret_settings: PydanticBaseSettingsSource,  # noqa: ARG003 - likewise
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then environment, then the TOML file."""
        toml_file = Path(os.environ.get("PIPESENTINEL_CONFIG", "pipesentinel.toml"))
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            if self.device_secret.get_secret_value() == DEVELOPMENT_DEVICE_SECRET:
                raise ValueError(
                    "device_secret: the development placeholder is refused in production; "
                    "set PIPESENTINEL_DEVICE_SECRET"
                )
            if self.broker.url is None:
                raise ValueError(
                    "broker.url: production needs an external broker "
                    "(the embedded broker is for development only)"
                )
        return self
