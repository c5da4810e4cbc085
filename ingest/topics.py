"""MQTT topic names of the device contract (version 1); see ``docs/mqtt.md``.

Devices publish under ``pipesentinel/v1/{site}/...``::

    pipesentinel/v1/{site}/gas/{device}               JSON gas reading
    pipesentinel/v1/{site}/wind/{device}              JSON wind report
    pipesentinel/v1/{site}/camera/{device}/visible    envelope + JPEG
    pipesentinel/v1/{site}/camera/{device}/thermal    envelope + 16-bit grayscale PNG (cK)
    pipesentinel/v1/{site}/camera/{device}/laser      JSON laser path integral
    pipesentinel/v1/{site}/status/{device}            retained "online" / "offline"

The ingest service announces itself on ``pipesentinel/service/{client_id}/status``, outside the
device tree, so that its own messages never reach its device subscription.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pipesentinel.site import DeviceKind

TOPIC_ROOT = "pipesentinel/v1"
"""Prefix of every device topic of contract version 1."""

SERVICE_TOPIC_ROOT = "pipesentinel/service"
"""Prefix of the ingest service's own status topic (outside the device tree)."""

TOPIC_SEPARATOR = "/"
STATUS_SEGMENT = "status"
CAMERA_SEGMENT = "camera"


class MessageKind(StrEnum):
    """What a device topic carries; also the key of the ingest counters of accepted messages."""

    GAS = "gas"
    WIND = "wind"
    VISIBLE = "visible"
    THERMAL = "thermal"
    LASER = "laser"
    STATUS = "status"


# Topic shape of each kind below the site: (kind segment, channel segment or None).
_SHAPES: dict[MessageKind, tuple[str, str | None]] = {
    MessageKind.GAS: (DeviceKind.GAS.value, None),
    MessageKind.WIND: (DeviceKind.WIND.value, None),
    MessageKind.VISIBLE: (CAMERA_SEGMENT, MessageKind.VISIBLE.value),
    MessageKind.THERMAL: (CAMERA_SEGMENT, MessageKind.THERMAL.value),
    MessageKind.LASER: (CAMERA_SEGMENT, MessageKind.LASER.value),
    MessageKind.STATUS: (STATUS_SEGMENT, None),
}
_KIND_OF_SHAPE: dict[tuple[str, str | None], MessageKind] = {
    shape: kind for kind, shape in _SHAPES.items()
}

# The device kind a topic requires; ``None``: any device (status topics).
REQUIRED_DEVICE_KIND: dict[MessageKind, DeviceKind | None] = {
    MessageKind.GAS: DeviceKind.GAS,
    MessageKind.WIND: DeviceKind.WIND,
    MessageKind.VISIBLE: DeviceKind.CAMERA,
    MessageKind.THERMAL: DeviceKind.CAMERA,
    MessageKind.LASER: DeviceKind.CAMERA,
    MessageKind.STATUS: None,
}

MQTT_WILDCARDS = frozenset("+#")


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """The parts of a device topic."""

    site_id: str
    kind: MessageKind
    device_id: str


class TopicError(ValueError):
    """A topic that is not a device topic of the contract; the message names what is wrong."""


def device_topic(
    site_id: str, kind: MessageKind, device_id: str, *, topic_root: str = TOPIC_ROOT
) -> str:
    """The topic on which ``device_id`` of ``site_id`` publishes messages of ``kind``."""
    kind_segment, channel = _SHAPES[MessageKind(kind)]
    parts = [topic_root, site_id, kind_segment, device_id]
    if channel is not None:
        parts.append(channel)
    return TOPIC_SEPARATOR.join(parts)


# Subtrees under ``{root}/{site}/`` where PipeSentinel itself publishes (alarms and incidents,
# issue 3). They are not device data: the ingest service acknowledges and counts them, nothing else.
SERVICE_OUTPUT_SEGMENTS: frozenset[str] = frozenset({"alarms", "incidents"})


def is_service_output(topic: str, *, topic_root: str = TOPIC_ROOT) -> bool:
    """Whether ``topic`` is under ``{root}/{site}/alarms`` or ``{root}/{site}/incidents``."""
    prefix = topic_root + TOPIC_SEPARATOR
    if not topic.startswith(prefix):
        return False
    parts = topic[len(prefix) :].split(TOPIC_SEPARATOR)
    return len(parts) >= 2 and bool(parts[0]) and parts[1] in SERVICE_OUTPUT_SEGMENTS


def subscription_filter(*, topic_root: str = TOPIC_ROOT) -> str:
    """The one MQTT subscription filter that covers every device topic: ``{root}/#``."""
    return f"{topic_root}{TOPIC_SEPARATOR}#"


def service_status_topic(client_id: str) -> str:
    """Retained online/offline status of the ingest service with this MQTT client id."""
    return TOPIC_SEPARATOR.join((SERVICE_TOPIC_ROOT, client_id, STATUS_SEGMENT))


def _shown(text: str, limit: int = 80) -> str:
    """``repr`` of ``text``, cut to ``limit`` characters so that details and logs stay short."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 4]}...'"


def parse_topic(topic: str, *, topic_root: str = TOPIC_ROOT) -> ParsedTopic:
    """Split a device topic into site, kind and device; :class:`TopicError` naming the problem."""
    prefix = topic_root + TOPIC_SEPARATOR
    if not topic.startswith(prefix):
        raise TopicError(f"topic {_shown(topic)} does not start with {prefix!r}")
    parts = topic[len(prefix) :].split(TOPIC_SEPARATOR)
    if len(parts) not in (3, 4):
        raise TopicError(
            f"topic {_shown(topic)} has {len(parts)} levels below {topic_root!r}; expected "
            "{site}/{gas|wind|status}/{device} or {site}/camera/{device}/{visible|thermal|laser}"
        )
    site_id, kind_segment, device_id = parts[:3]
    channel = parts[3] if len(parts) == 4 else None
    for name, value in (("site", site_id), ("device", device_id), ("channel", channel)):
        if value is None:
            continue
        if not value:
            raise TopicError(f"topic {_shown(topic)}: empty {name} level")
        if MQTT_WILDCARDS & set(value):
            raise TopicError(f"topic {_shown(topic)}: wildcard character in the {name} level")
    kind = _KIND_OF_SHAPE.get((kind_segment, channel))
    if kind is None:
        shape = kind_segment if channel is None else f"{kind_segment}/{{device}}/{channel}"
        raise TopicError(f"topic {_shown(topic)}: unknown message type {_shown(shape)}")
    return ParsedTopic(site_id=site_id, kind=kind, device_id=device_id)
