"""Settings of the notifier (:mod:`pipesentinel.ingest.notifications`): a section of ``Settings``.

Kept apart from the notifier so that :mod:`pipesentinel.settings` can hold it without importing
the MQTT and HTTP machinery (which imports the settings).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# RFC 2104 section 3: keys shorter than the hash output (32 bytes for SHA-256) are "strongly
# discouraged".
HMAC_MIN_KEY_BYTES: Final = 32


def webhook_channel(url: str) -> str:
    """The log's name of a webhook URL: user-info removed, a query string replaced by its hash.

    So that no credential carried in a URL ends up in the log, while two URLs that differ only
    in their query stay distinct channels.
    """
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = (
        f"?sha256:{hashlib.sha256(parts.query.encode()).hexdigest()[:12]}" if parts.query else ""
    )
    return f"{parts.scheme}://{host}{parts.path}{query}"


class EscalationPolicy(BaseModel):
    """When an unacknowledged alarm of one priority is escalated.

    Level 1 after ``first_after_s`` unacknowledged, then one more level every
    ``repeat_after_s``, up to ``max_level``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_after_s: float = Field(gt=0, description="[s]")
    repeat_after_s: float = Field(gt=0, description="[s]")
    max_level: int = Field(ge=1, le=100)


# Design choices, not cited values (brief of issue 3): critical 60 s, high 120 s, medium 300 s,
# repeated at the same interval; low priority alarms are not escalated. Operators set their own.
DEFAULT_ESCALATION: Final = {
    "critical": EscalationPolicy(first_after_s=60.0, repeat_after_s=60.0, max_level=3),
    "high": EscalationPolicy(first_after_s=120.0, repeat_after_s=120.0, max_level=3),
    "medium": EscalationPolicy(first_after_s=300.0, repeat_after_s=300.0, max_level=2),
}
# ISA-18.2 states in which an alarm waits for an operator (active, or returned to normal, and
# unacknowledged); compared case-insensitively with the event's ``state``.
DEFAULT_UNACKNOWLEDGED_STATES: Final = ("unack", "rtn_unack")


def check_webhook_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; ``ValueError`` naming it otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"webhook URL {webhook_channel(url)!r}: the scheme must be http or https")
    try:
        parts.port  # noqa: B018 - parsing the port validates it
    except ValueError as error:
        raise ValueError(f"webhook URL {webhook_channel(url)!r}: {error}") from None
    if not parts.hostname:
        raise ValueError(f"webhook URL {webhook_channel(url)!r} names no host")
    if parts.fragment:
        raise ValueError(f"webhook URL {webhook_channel(url)!r}: a fragment is never sent")
    return url


class NotificationSettings(BaseModel):
    """Notifications: MQTT retained state, webhooks with retry, escalation, the attempts log.

    The broker itself (URL, credentials, TLS, reconnect delays) is ``settings.broker``; the
    notifier connects with its own client id.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    mqtt_enabled: bool = True
    mqtt_client_id: str = Field(default="pipesentinel-notifier", min_length=1)
    mqtt_pending_capacity: int = Field(
        default=10_000, ge=1, description="states kept while the broker is away [topics]"
    )
    webhook_urls: tuple[str, ...] = ()
    escalation_webhook_urls: tuple[str, ...] = Field(
        default=(), description="escalations go here; empty: to webhook_urls"
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key, at least 32 bytes; None: unsigned"
    )
    webhook_signature_header: str = Field(default="X-PipeSentinel-Signature-256", min_length=1)
    webhook_alarm_priorities: tuple[str, ...] | None = Field(
        default=None, description="alarm priorities sent to webhook_urls; None: all"
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="per attempt [s]")
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_max_age_s: float = Field(default=3600.0, gt=0, description="give up after [s]")
    webhook_retry_min_delay_s: float = Field(default=1.0, gt=0, description="[s]")
    webhook_retry_max_delay_s: float = Field(default=300.0, gt=0, description="[s]")
    webhook_queue_capacity: int = Field(default=1000, ge=1, description="per URL [events]")
    escalation: dict[str, EscalationPolicy] = Field(
        default_factory=lambda: dict(DEFAULT_ESCALATION)
    )
    escalation_roles: tuple[str, ...] = Field(
        default=(), description="role of level 1, 2, ...; the last one for higher levels"
    )
    unacknowledged_states: tuple[str, ...] = DEFAULT_UNACKNOWLEDGED_STATES
    log_path: Path = Path("var/notifications.sqlite3")
    idempotency_window_s: float = Field(default=7 * 86_400.0, gt=0, description="[s]")
    log_retention_s: float = Field(default=90 * 86_400.0, gt=0, description="[s]")

    @field_validator("webhook_urls", "escalation_webhook_urls")
    @classmethod
    def _check_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            check_webhook_url(url)
        if len(set(urls)) != len(urls):
            raise ValueError("the same webhook URL is listed twice")
        return urls

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value().encode()) < HMAC_MIN_KEY_BYTES:
            raise ValueError(
                f"webhook_secret is shorter than {HMAC_MIN_KEY_BYTES} bytes (RFC 2104 section 3)"
            )
        return secret

    @field_validator("escalation")
    @classmethod
    def _check_priorities(
        cls, policies: dict[str, EscalationPolicy]
    ) -> dict[str, EscalationPolicy]:
        if any(not priority.strip() for priority in policies):
            raise ValueError("escalation: empty priority name")
        return policies

    @field_validator("unacknowledged_states")
    @classmethod
    def _check_states(cls, states: tuple[str, ...]) -> tuple[str, ...]:
        if not states or any(not state.strip() for state in states):
            raise ValueError("unacknowledged_states must be non-empty state names")
        return tuple(state.lower() for state in states)

    @model_validator(mode="after")
    def _check_delays(self) -> NotificationSettings:
        if self.webhook_retry_min_delay_s > self.webhook_retry_max_delay_s:
            raise ValueError(
                f"webhook_retry_min_delay_s ({self.webhook_retry_min_delay_s}) exceeds "
                f"webhook_retry_max_delay_s ({self.webhook_retry_max_delay_s})"
            )
        return self


# --- topics, ids, signatures ---------------------------------------------------------------------
