"""A cheap MQTT 3.1.1 load generator: a raw socket, pre-encoded packets, pipelined PUBACKs.

Test equipment, not part of the product. paho spends tens of microseconds of Python per
PUBLISH (packet assembly, its in-flight bookkeeping, a callback per PUBACK) and an MQTT 5
publisher is held to the broker's Receive Maximum (Mosquitto 2.0 announces 20), so one paho
client offered only about 2700 of 4000 messages/s on the 2-core development VM while the
measured chain shared its CPUs (``bench/alarm_latency.py``, before this module). This one
speaks the few packets a QoS 1 publisher needs (MQTT 3.1.1, OASIS Standard 2014: CONNECT 3.1,
CONNACK 3.2, PUBLISH 3.3, PUBACK 3.4, DISCONNECT 3.14), writes each chunk of PUBLISHes with one
``sendall`` and counts PUBACKs on a reader thread, keeping up to ``window`` messages in flight
(MQTT 3.1.1 has no Receive Maximum; Mosquitto takes what arrives).

Only the publisher side: no subscriptions, no QoS 2, keepalive off (0, section 3.1.2.10), no TLS.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from types import TracebackType
from typing import Final, Self

# MQTT 3.1.1 control packet first bytes (section 2.2.1) and fixed fields.
CONNECT: Final = 0x10
CONNACK: Final = 0x20
PUBLISH_QOS1: Final = 0x32  # PUBLISH, DUP 0, QoS 1, RETAIN 0 (section 3.3.1)
PUBACK: Final = 0x40
DISCONNECT_PACKET: Final = b"\xe0\x00"
PACKET_TYPE_MASK: Final = 0xF0
PROTOCOL_NAME: Final = b"\x00\x04MQTT"
PROTOCOL_LEVEL_311: Final = 4
CLEAN_SESSION_FLAG: Final = 0x02
KEEPALIVE_OFF_S: Final = 0
CONNACK_ACCEPTED: Final = 0
PACKET_ID_MAX: Final = 0xFFFF  # packet identifiers are 1 .. 65535 (section 2.3.1)
VARINT_DIGIT_BITS: Final = 7
VARINT_DIGIT_MASK: Final = 0x7F
VARINT_CONTINUE: Final = 0x80
VARINT_MAX_DIGITS: Final = 4
UINT16_BYTES: Final = 2

DEFAULT_WINDOW_MESSAGES: Final = 4000  # PUBLISHes in flight at most (test equipment's choice)
RECEIVE_BYTES: Final = 65536
CONNECT_TIMEOUT_S: Final = 30.0
DRAIN_TIMEOUT_S: Final = 30.0


def remaining_length(length: int) -> bytes:
    """The variable-length "Remaining Length" encoding of ``length`` (section 2.2.3) [-]."""
    if not 0 <= length < 1 << (VARINT_DIGIT_BITS * VARINT_MAX_DIGITS):
        raise ValueError(f"remaining length {length} is outside 0 .. 268435455")
    out = bytearray()
    while True:
        digit = length & VARINT_DIGIT_MASK
        length >>= VARINT_DIGIT_BITS
        out.append(digit | VARINT_CONTINUE if length else digit)
        if not length:
            return bytes(out)


def topic_field(topic: str) -> bytes:
    """A topic as the PUBLISH variable header carries it: 2-byte length, UTF-8 (section 1.5.3)."""
    encoded = topic.encode()
    return len(encoded).to_bytes(UINT16_BYTES, "big") + encoded


def publish_packet(encoded_topic: bytes, packet_id: int, payload: bytes) -> bytes:
    """One QoS 1 PUBLISH; ``encoded_topic`` from :func:`topic_field`."""
    length = len(encoded_topic) + UINT16_BYTES + len(payload)
    return b"".join(
        (
            bytes((PUBLISH_QOS1,)),
            remaining_length(length),
            encoded_topic,
            packet_id.to_bytes(UINT16_BYTES, "big"),
            payload,
        )
    )


def connect_packet(client_id: str) -> bytes:
    """CONNECT with a clean session, no will, no credentials, keepalive off."""
    identifier = topic_field(client_id)  # a UTF-8 string field, encoded like a topic
    body = (
        PROTOCOL_NAME
        + bytes((PROTOCOL_LEVEL_311, CLEAN_SESSION_FLAG))
        + KEEPALIVE_OFF_S.to_bytes(UINT16_BYTES, "big")
        + identifier
    )
    return bytes((CONNECT,)) + remaining_length(len(body)) + body


class RawPublisher:
    """An MQTT 3.1.1 QoS 1 publisher on a plain socket, up to ``window`` PUBLISHes in flight.

    Parameters
    ----------
    host, port
        The broker (plain TCP).
    client_id
        MQTT client id (a clean session).
    window
        Unacknowledged PUBLISHes at most [-]; at most 65535 (distinct packet identifiers).
    """

    def __init__(
        self, host: str, port: int, client_id: str, *, window: int = DEFAULT_WINDOW_MESSAGES
    ) -> None:
        if not 1 <= window <= PACKET_ID_MAX:
            raise ValueError(f"window must be 1 .. {PACKET_ID_MAX}, got {window}")
        self._window = window
        self._sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(connect_packet(client_id))
        connack = self._receive_exactly(4)
        if connack[0] & PACKET_TYPE_MASK != CONNACK or connack[3] != CONNACK_ACCEPTED:
            self._sock.close()
            raise ConnectionError(f"{client_id}: CONNACK {connack.hex()} from {host}:{port}")
        self._sock.settimeout(None)
        self.published = 0
        self.acknowledged = 0
        self.error: str | None = None
        self._next_id = 0
        self._acked = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="mqtt-load-reader", daemon=True)
        self._reader.start()

    def _receive_exactly(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self._sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the connection")
            data += chunk
        return data

    def _read(self) -> None:
        """Count PUBACKs (and skip anything else) until the connection closes."""
        buffer = b""
        try:
            while True:
                chunk = self._sock.recv(RECEIVE_BYTES)
                if not chunk:
                    break
                buffer += chunk
                acks, buffer = _count_pubacks(buffer)
                if acks:
                    with self._acked:
                        self.acknowledged += acks
                        self._acked.notify_all()
        except OSError as error:
            if not self._closed:
                self.error = f"{type(error).__name__}: {error}"
        finally:
            with self._acked:
                self._closed = True
                self._acked.notify_all()

    @property
    def in_flight(self) -> int:
        """PUBLISHes sent and not yet acknowledged [-]."""
        return self.published - self.acknowledged

    def publish(self, messages: Iterable[tuple[bytes, bytes]], *, timeout_s: float) -> None:
        """Send ``(encoded_topic, payload)`` pairs as QoS 1 PUBLISHes in one write.

        Waits first until the whole chunk fits in the window (``TimeoutError`` after
        ``timeout_s`` [s]); ``ConnectionError`` if the connection is gone.
        """
        items = list(messages)
        if not items:
            return
        if len(items) > self._window:
            raise ValueError(f"a chunk of {len(items)} exceeds the window of {self._window}")
        with self._acked:
            if not self._acked.wait_for(
                lambda: self._closed or self.in_flight + len(items) <= self._window, timeout_s
            ):
                raise TimeoutError(f"{self.in_flight} PUBACKs missing after {timeout_s} s")
            if self._closed:
                raise ConnectionError(f"the connection is closed ({self.error})")
        packets = []
        next_id = self._next_id
        for encoded_topic, payload in items:
            next_id = next_id % PACKET_ID_MAX + 1
            packets.append(publish_packet(encoded_topic, next_id, payload))
        self._next_id = next_id
        self._sock.sendall(b"".join(packets))
        with self._acked:
            self.published += len(items)

    def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait until every PUBLISH is acknowledged [s]; ``False`` on timeout."""
        with self._acked:
            return self._acked.wait_for(lambda: self._closed or not self.in_flight, timeout_s)

    def close(self) -> None:
        """Wait for the PUBACKs, send DISCONNECT and close. Idempotent."""
        if self._closed:
            return
        self.drain()
        self._closed = True
        try:
            self._sock.sendall(DISCONNECT_PACKET)
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        self._reader.join(DRAIN_TIMEOUT_S)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _count_pubacks(buffer: bytes) -> tuple[int, bytes]:
    """PUBACKs among the whole packets at the start of ``buffer``, and the incomplete rest."""
    acks = 0
    position = 0
    end = len(buffer)
    while position < end:
        first = buffer[position]
        length = 0
        shift = 0
        cursor = position + 1
        while True:
            if cursor >= end:
                return acks, buffer[position:]
            digit = buffer[cursor]
            cursor += 1
            length |= (digit & VARINT_DIGIT_MASK) << shift
            if not digit & VARINT_CONTINUE:
                break
            shift += VARINT_DIGIT_BITS
        if cursor + length > end:
            return acks, buffer[position:]
        if first & PACKET_TYPE_MASK == PUBACK:
            acks += 1
        position = cursor + length
    return acks, b""
