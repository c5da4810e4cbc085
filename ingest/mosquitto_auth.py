"""Mosquitto 2.0 password file, ACL file and ``mosquitto.conf``, generated from the site model.

Every device logs in with its id as username and the password derived from the site secret
(:func:`pipesentinel.credentials.device_password`), and may publish ONLY on its own topics:

==========  ================================================================================
gas         ``pipesentinel/v1/{site}/gas/{device}``
wind        ``pipesentinel/v1/{site}/wind/{device}``
camera      ``pipesentinel/v1/{site}/camera/{device}/visible|thermal|laser``
every one   ``pipesentinel/v1/{site}/status/{device}`` (retained status and last will)
==========  ================================================================================

It may subscribe to nothing. The service user (the ingest/alarm service, name and password given
by the caller) reads ``pipesentinel/v1/#`` and writes ``pipesentinel/v1/{site}/alarms/#`` and
``pipesentinel/v1/{site}/incidents/#`` (a ``/#`` filter also matches its parent) plus its own
status under ``pipesentinel/service/#``. Anonymous clients are refused. A message published
outside a client's ACL is dropped by the broker (MQTT 3.1.1: silently; MQTT 5: PUBACK "not
authorised"), so a compromised device can neither spoof another device nor read the site.

Passwords are stored as mosquitto_passwd 2.0 writes them: ``$7$`` (PBKDF2-HMAC-SHA512) with the
iteration count, a 12-byte salt and the 64-byte hash, both base64
(mosquitto 2.0 ``common/password_mosq.c`` and ``common/password_mosq.h``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from pipesentinel.credentials import device_password
from pipesentinel.ingest.topics import (
    SERVICE_TOPIC_ROOT,
    TOPIC_ROOT,
    TOPIC_SEPARATOR,
    MessageKind,
    device_topic,
)
from pipesentinel.site import Device, DeviceKind, Site

# mosquitto 2.0 common/password_mosq.h: ``pw_sha512_pbkdf2 = 7``, ``SALT_LEN 12``,
# ``PW_DEFAULT_ITERATIONS 101``; the hash is the full SHA-512 digest (64 bytes).
PBKDF2_SHA512_HASH_TYPE: Final = 7
MOSQUITTO_SALT_BYTES: Final = 12
MOSQUITTO_DEFAULT_ITERATIONS: Final = 101
SHA512_DIGEST_BYTES: Final = 64

MQTT_PORT: Final = 1883  # IANA-registered MQTT port (RFC 6335 registry)
MOSQUITTO_DEFAULT_AUTOSAVE_INTERVAL_S: Final = 1800  # mosquitto.conf(5) default
# Per-client queue of QoS 1/2 messages while a persistent-session client is away: sized for the
# ingest service being down for an hour at about 25 messages per second (design choice; the
# mosquitto default of 1000 would lose messages after a minute). Frames are bounded by bytes.
PRODUCTION_MAX_QUEUED_MESSAGES: Final = 100_000
PRODUCTION_MAX_QUEUED_BYTES: Final = 512 * 1024 * 1024
PASSWORD_FILE_MODE: Final = 0o640  # readable by the broker's group, never by the world
CONFIG_FILE_MODE: Final = 0o644

# What the service user may publish under its site's topic tree (see the module docstring).
SERVICE_WRITE_SUBTOPICS: Final = ("alarms/#", "incidents/#")

# Device topics of each device kind (the status topic is added for every device).
_KINDS_OF_DEVICE: Final[dict[DeviceKind, tuple[MessageKind, ...]]] = {
    DeviceKind.GAS: (MessageKind.GAS,),
    DeviceKind.WIND: (MessageKind.WIND,),
    DeviceKind.CAMERA: (MessageKind.VISIBLE, MessageKind.THERMAL, MessageKind.LASER),
}

# Characters a username may not contain: ':' ends the name in the password file, the MQTT
# wildcards and '/' would change the meaning of the topics it appears in.
_FORBIDDEN_USERNAME_CHARACTERS: Final = frozenset(":+#/")


@dataclass(frozen=True)
class MqttUser:
    """A broker login. The password is kept out of ``repr``."""

    username: str
    password: str = field(repr=False)


def _check_username(username: str) -> None:
    if not username:
        raise ValueError("MQTT username is empty")
    bad = _FORBIDDEN_USERNAME_CHARACTERS & set(username)
    if bad or any(ch.isspace() or not ch.isprintable() for ch in username):
        raise ValueError(
            f"MQTT username {username!r}: no whitespace, control characters or any of "
            f"{''.join(sorted(_FORBIDDEN_USERNAME_CHARACTERS))!r} allowed"
        )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(
    password: str, *, iterations: int = MOSQUITTO_DEFAULT_ITERATIONS, salt: bytes | None = None
) -> str:
    """``password`` hashed as mosquitto_passwd 2.0 does: ``$7$<iterations>$<salt>$<hash>``.

    Parameters
    ----------
    password
        The clear-text password (UTF-8), non-empty.
    iterations
        PBKDF2 iterations; 101 is mosquitto_passwd's default. Device passwords carry 192 random
        bits, so the count matters only for human-chosen passwords: raise it for those.
    salt
        12 random bytes by default; give one only to reproduce a hash (tests).
    """
    if not password:
        raise ValueError("password is empty")
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    if salt is None:
        salt = secrets.token_bytes(MOSQUITTO_SALT_BYTES)
    if len(salt) != MOSQUITTO_SALT_BYTES:
        raise ValueError(f"salt must be {MOSQUITTO_SALT_BYTES} bytes, got {len(salt)}")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"${PBKDF2_SHA512_HASH_TYPE}${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash; ``ValueError`` for a malformed hash."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != str(PBKDF2_SHA512_HASH_TYPE):
        raise ValueError(f"not a mosquitto $7$ PBKDF2-SHA512 hash: {encoded[:12]!r}...")
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError as error:
        raise ValueError(f"malformed mosquitto hash: {error}") from error
    if iterations < 1 or len(expected) != SHA512_DIGEST_BYTES:
        raise ValueError("malformed mosquitto hash: bad iteration count or hash length")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def device_users(site: Site, *, device_secret: str) -> tuple[MqttUser, ...]:
    """The broker login of every device of ``site`` (username = device id)."""
    users = []
    for device in site.devices:
        _check_username(device.id)
        password = device_password(secret=device_secret, site_id=site.id, device_id=device.id)
        users.append(MqttUser(username=device.id, password=password))
    return tuple(users)


def device_write_topics(
    site_id: str, device: Device, *, topic_root: str = TOPIC_ROOT
) -> tuple[str, ...]:
    """The topics ``device`` may publish on (and nothing else)."""
    kinds = (*_KINDS_OF_DEVICE[device.kind], MessageKind.STATUS)
    return tuple(device_topic(site_id, kind, device.id, topic_root=topic_root) for kind in kinds)


def password_file_text(
    users: Iterable[MqttUser], *, iterations: int = MOSQUITTO_DEFAULT_ITERATIONS
) -> str:
    """A mosquitto password file: one ``username:$7$...`` line per user."""
    lines = []
    seen: set[str] = set()
    for user in users:
        _check_username(user.username)
        if user.username in seen:
            raise ValueError(f"MQTT username {user.username!r} appears twice")
        seen.add(user.username)
        lines.append(f"{user.username}:{hash_password(user.password, iterations=iterations)}")
    return "\n".join(lines) + "\n"


def acl_file_text(site: Site, *, service_username: str, topic_root: str = TOPIC_ROOT) -> str:
    """A mosquitto ACL file: each device writes its own topics; the service reads the tree."""
    _check_username(service_username)
    if site.device(service_username) is not None:
        raise ValueError(f"service username {service_username!r} is also a device id")
    site_root = TOPIC_SEPARATOR.join((topic_root, site.id))
    lines = [
        f"# PipeSentinel broker ACL for site {site.id!r}, generated from the site model.",
        "# Anonymous clients: no access (no topic lines before the first 'user').",
        "",
        f"user {service_username}",
        f"topic read {topic_root}/#",
        *(f"topic write {site_root}/{subtopic}" for subtopic in SERVICE_WRITE_SUBTOPICS),
        f"topic readwrite {SERVICE_TOPIC_ROOT}/#",
    ]
    for device in site.devices:
        _check_username(device.id)
        lines += ["", f"user {device.id}"]
        lines += [
            f"topic write {topic}"
            for topic in device_write_topics(site.id, device, topic_root=topic_root)
        ]
    return "\n".join(lines) + "\n"


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_auth_files(
    site: Site,
    *,
    device_secret: str,
    service_user: MqttUser,
    password_file: Path,
    acl_file: Path,
    iterations: int = MOSQUITTO_DEFAULT_ITERATIONS,
) -> None:
    """Write the password file (devices and the service user) and the ACL file of ``site``.

    Both are written atomically with mode 0640; give them to the broker's group (``chgrp
    mosquitto``) and reload the broker (SIGHUP) to apply them.
    """
    users = (*device_users(site, device_secret=device_secret), service_user)
    _write_atomically(
        password_file, password_file_text(users, iterations=iterations), PASSWORD_FILE_MODE
    )
    _write_atomically(
        acl_file,
        acl_file_text(site, service_username=service_user.username),
        PASSWORD_FILE_MODE,
    )


@dataclass(frozen=True)
class BrokerConfig:
    """A complete Mosquitto 2.0 configuration; checked on construction.

    Parameters
    ----------
    port
        Listener port; 1883 for plain MQTT, 8883 is usual with TLS.
    bind_address
        Interface address to listen on; ``None``: all interfaces.
    password_file, acl_file
        From :func:`write_auth_files`. Without a password file, ``allow_anonymous`` must be true.
    allow_anonymous
        Accept clients without credentials (tests and development only).
    persistence_dir
        Where the broker saves retained messages and persistent sessions; ``None``: no
        persistence (that state is lost on restart).
    autosave_interval_s
        How often the in-memory state is saved to ``persistence_dir`` [s].
    max_queued_messages, max_queued_bytes
        Per-client queue of QoS 1/2 messages while the client is away or slow [-], [bytes];
        ``0`` bytes: no byte limit.
    certfile, keyfile
        PEM server certificate and key: the listener then speaks TLS (1.2 or later).
    log_dest
        mosquitto ``log_dest``: ``stderr`` (journald under systemd), ``syslog``, ``stdout`` or
        ``file /path``.
    user
        The account a broker started as root switches to before reading the password, ACL and
        persistence files; ``None``: mosquitto's default (``mosquitto``). Ignored unless root.
    """

    port: int = MQTT_PORT
    bind_address: str | None = None
    password_file: Path | None = None
    acl_file: Path | None = None
    allow_anonymous: bool = False
    persistence_dir: Path | None = None
    autosave_interval_s: int = MOSQUITTO_DEFAULT_AUTOSAVE_INTERVAL_S
    max_queued_messages: int = PRODUCTION_MAX_QUEUED_MESSAGES
    max_queued_bytes: int = PRODUCTION_MAX_QUEUED_BYTES
    certfile: Path | None = None
    keyfile: Path | None = None
    log_dest: str = "stderr"
    user: str | None = None

    def __post_init__(self) -> None:
        if not 0 < self.port < 2**16:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if self.password_file is None and not self.allow_anonymous:
            raise ValueError("no password_file and allow_anonymous=False: nobody could connect")
        if self.acl_file is not None and self.password_file is None:
            raise ValueError("acl_file needs a password_file: ACLs are per authenticated user")
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together")
        for name, number, minimum in (
            ("max_queued_messages", self.max_queued_messages, 0),
            ("max_queued_bytes", self.max_queued_bytes, 0),
            ("autosave_interval_s", self.autosave_interval_s, 1),
        ):
            if number < minimum:
                raise ValueError(f"{name} must be at least {minimum}, got {number}")
        for name, value in (
            ("bind_address", self.bind_address),
            ("password_file", self.password_file),
            ("acl_file", self.acl_file),
            ("persistence_dir", self.persistence_dir),
            ("certfile", self.certfile),
            ("keyfile", self.keyfile),
            ("log_dest", self.log_dest),
            ("user", self.user),
        ):
            if value is not None and any(ch in str(value) for ch in "\r\n"):
                raise ValueError(f"{name}: a line break cannot go into mosquitto.conf")

    def text(self) -> str:
        """The ``mosquitto.conf`` text."""
        lines = [
            "# PipeSentinel Mosquitto 2.0 configuration, generated by pipesentinel.",
            "per_listener_settings false",
            f"allow_anonymous {'true' if self.allow_anonymous else 'false'}",
        ]
        if self.user is not None:
            lines.append(f"user {self.user}")
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        if self.persistence_dir is None:
            lines.append("persistence false")
        else:
            lines += [
                "persistence true",
                f"persistence_location {str(self.persistence_dir).rstrip('/')}/",
                "persistence_file mosquitto.db",
                f"autosave_interval {self.autosave_interval_s}",
            ]
        lines += [
            f"max_queued_messages {self.max_queued_messages}",
            f"max_queued_bytes {self.max_queued_bytes}",
            "set_tcp_nodelay true",
            f"log_dest {self.log_dest}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            "",
            f"listener {self.port}"
            + ("" if self.bind_address is None else f" {self.bind_address}"),
            "protocol mqtt",
        ]
        if self.certfile is not None and self.keyfile is not None:
            lines += [f"certfile {self.certfile}", f"keyfile {self.keyfile}", "tls_version tlsv1.2"]
        return "\n".join(lines) + "\n"


def write_mosquitto_conf(path: Path, config: BrokerConfig) -> None:
    """Write ``config`` as ``mosquitto.conf`` to ``path`` atomically (mode 0644)."""
    _write_atomically(path, config.text(), CONFIG_FILE_MODE)
