"""Recording of the raw MQTT messages the ingest service receives, and reading them back.

A recording is a JSON-lines file (UTF-8, in fact pure ASCII: every non-ASCII character is
escaped), one message per line, in the order received::

    {"topic": "pipesentinel/v1/wanli/gas/G01", "received_time_s": 1800000000.125, "payload": "..."}
    {"topic": "pipesentinel/v1/wanli/camera/C01/thermal", ..., "payload_base64": "UFNJRgEA..."}

``payload`` holds a payload that is valid UTF-8, as text; any other payload (camera envelopes,
garbage) is in ``payload_base64`` (RFC 4648 base64 with padding). Exactly one of the two is
present. ``received_time_s`` is the service's receive time, seconds since the Unix epoch, the
same value its decoder checked the timestamps against, so a replay through
:class:`~pipesentinel.ingest.contract.Decoder` gives the same records and rejections.

Malformed lines are reported, never skipped in silence: :func:`read_recording` raises
:class:`RecordingFormatError` naming the file, the line and what is wrong, or, given
``on_error``, hands that error to the callback and goes on with the next line (what a replay
wants: report the bad line, keep replaying).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from pathlib import Path
from types import TracebackType
from typing import Final, Self

TOPIC_FIELD: Final = "topic"
RECEIVED_TIME_FIELD: Final = "received_time_s"
TEXT_PAYLOAD_FIELD: Final = "payload"
BINARY_PAYLOAD_FIELD: Final = "payload_base64"
LINE_END: Final = b"\n"

# Design choice: one write system call per this many bytes of recording at most (plus one per
# flush); large enough that a flush per stored batch dominates, small next to a process's memory.
DEFAULT_BUFFER_BYTES: Final = 1 << 20
_SHOWN_CHARS: Final = 60


class RecordingFormatError(ValueError):
    """A line of a recording is not a recorded message.

    Attributes
    ----------
    path
        The recording.
    line
        The line number, from 1.
    problem
        What is wrong with it.
    """

    def __init__(self, path: Path, line: int, problem: str) -> None:
        super().__init__(f"{path}, line {line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """One message of a recording."""

    topic: str
    payload: bytes
    received_time_s: float  # receive time, seconds since the Unix epoch [s]
    line: int  # line number in the recording, from 1


def record_line(topic: str, payload: bytes, received_time_s: float) -> bytes:
    """The recording line (with its newline) of one message.

    Parameters
    ----------
    topic
        The MQTT topic.
    payload
        The raw payload.
    received_time_s
        Receive time, seconds since the Unix epoch [s]; must be finite.

    Raises
    ------
    ValueError
        ``received_time_s`` is not finite (JSON has no NaN or infinity).
    """
    if not math.isfinite(received_time_s):
        raise ValueError(f"received_time_s must be finite, got {received_time_s!r}")
    try:
        body = f'"{TEXT_PAYLOAD_FIELD}": {encode_basestring_ascii(payload.decode("utf-8"))}'
    except UnicodeDecodeError:
        body = f'"{BINARY_PAYLOAD_FIELD}": "{base64.b64encode(payload).decode("ascii")}"'
    # float.__repr__ is the shortest text that reads back to the same float (and is valid JSON).
    text = (
        f'{{"{TOPIC_FIELD}": {encode_basestring_ascii(topic)}, '
        f'"{RECEIVED_TIME_FIELD}": {float(received_time_s)!r}, {body}}}\n'
    )
    return text.encode("ascii")


class RecordingWriter:
    """Appends messages to a recording through a buffered writer; a context manager.

    Not thread-safe: one thread writes (the ingest service's MQTT network thread). Lines reach
    the file when the buffer fills, on :meth:`flush` and on :meth:`close`; a flush hands them to
    the operating system (no ``fsync``: a recording is a diagnostic copy, the telemetry store is
    the durable one). An existing file is appended to; if it ends in the middle of a line (a
    process that died while writing), a line break is added first, so that the broken line stays
    one malformed line and the new ones are whole.

    Parameters
    ----------
    path
        The recording file; its directory is created if missing.
    buffer_bytes
        Size of the write buffer [byte].
    """

    def __init__(self, path: Path | str, *, buffer_bytes: int = DEFAULT_BUFFER_BYTES) -> None:
        if buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be at least 1, got {buffer_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab", buffering=buffer_bytes)
        self.messages_written = 0
        """Messages written (buffered or in the file) since this writer opened [-]."""
        self._unflushed = False
        try:
            if self._file.tell() and not _ends_with_line_end(self.path):
                self._file.write(LINE_END)
                self._file.flush()
        except OSError:
            self._file.close()
            raise

    @property
    def unflushed(self) -> bool:
        """Whether lines were written since the last :meth:`flush`."""
        return self._unflushed

    def write(self, topic: str, payload: bytes, received_time_s: float) -> None:
        """Append one message (see :func:`record_line`); ``OSError`` if the file fails.

        Parameters
        ----------
        topic
            The MQTT topic.
        payload
            The raw payload.
        received_time_s
            Receive time, seconds since the Unix epoch [s].
        """
        self._file.write(record_line(topic, payload, received_time_s))
        self.messages_written += 1
        self._unflushed = True

    def flush(self) -> None:
        """Hand the buffered lines to the operating system."""
        self._file.flush()
        self._unflushed = False

    def close(self) -> None:
        """Flush and close; idempotent."""
        if not self._file.closed:
            self._unflushed = False
            self._file.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (or the file failed to open)."""
        return self._file.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _ends_with_line_end(path: Path) -> bool:
    with path.open("rb") as file:
        file.seek(-len(LINE_END), 2)
        return file.read() == LINE_END


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 3]}..."


def _parse_line(raw: bytes) -> tuple[str, bytes, float]:
    """Topic, payload and receive time of one line; ``ValueError`` saying what is wrong."""
    try:
        text = raw.decode("utf-8")  # json.loads(bytes) would guess UTF-16/32 from the first bytes
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        value = json.loads(text)
    except ValueError as error:
        raise ValueError(f"not valid JSON ({error})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, expected an object")
    topic, time_s, payload_field = _checked_fields(value)
    payload_text = value[payload_field]
    if not isinstance(payload_text, str):
        raise ValueError(f"field {payload_field!r}: expected a string, got {_shown(payload_text)}")
    if payload_field == TEXT_PAYLOAD_FIELD:
        try:
            return topic, payload_text.encode("utf-8"), time_s
        except UnicodeEncodeError:
            raise ValueError(
                f"field {payload_field!r}: contains a lone surrogate, not text a payload decodes to"
            ) from None
    try:
        return topic, base64.b64decode(payload_text, validate=True), time_s
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"field {payload_field!r}: not valid base64 ({error})") from None


def _checked_fields(value: dict[str, object]) -> tuple[str, float, str]:
    """Topic, receive time and the name of the payload field of a line's object."""
    payload_fields = [name for name in (TEXT_PAYLOAD_FIELD, BINARY_PAYLOAD_FIELD) if name in value]
    allowed = {TOPIC_FIELD, RECEIVED_TIME_FIELD, TEXT_PAYLOAD_FIELD, BINARY_PAYLOAD_FIELD}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(map(_shown, unknown))}")
    missing = [name for name in (TOPIC_FIELD, RECEIVED_TIME_FIELD) if name not in value]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(map(repr, missing))}")
    if len(payload_fields) != 1:
        raise ValueError(
            f"needs exactly one of {TEXT_PAYLOAD_FIELD!r} and {BINARY_PAYLOAD_FIELD!r}, "
            f"has {len(payload_fields)}"
        )
    topic = value[TOPIC_FIELD]
    if not isinstance(topic, str):
        raise ValueError(f"field {TOPIC_FIELD!r}: expected a string, got {_shown(topic)}")
    time_s = value[RECEIVED_TIME_FIELD]
    if isinstance(time_s, bool) or not isinstance(time_s, int | float):
        raise ValueError(f"field {RECEIVED_TIME_FIELD!r}: expected a number, got {_shown(time_s)}")
    try:
        time_s = float(time_s)
    except OverflowError:
        raise ValueError(f"field {RECEIVED_TIME_FIELD!r}: {_shown(time_s)} is too large") from None
    if not math.isfinite(time_s):
        raise ValueError(f"field {RECEIVED_TIME_FIELD!r}: {time_s!r} is not finite")
    return topic, time_s, payload_fields[0]


def read_recording(
    path: Path | str, *, on_error: Callable[[RecordingFormatError], None] | None = None
) -> Iterator[RecordedMessage]:
    """The messages of a recording, in order.

    Parameters
    ----------
    path
        The recording file.
    on_error
        Called with the :class:`RecordingFormatError` of each malformed line, which is then
        skipped; ``None``: the error is raised (and the iteration ends).

    Raises
    ------
    RecordingFormatError
        A line is not a recorded message (without ``on_error``); it names the file and line.
    OSError
        The file cannot be read.
    """
    path = Path(path)
    with path.open("rb") as file:
        for number, raw in enumerate(file, start=1):
            line = raw[: -len(LINE_END)] if raw.endswith(LINE_END) else raw
            try:
                if not line.strip():
                    raise ValueError("empty line")
                topic, payload, time_s = _parse_line(line)
            except ValueError as error:
                problem = str(error)
                if not raw.endswith(LINE_END):
                    problem += " (the last line is incomplete: the recorder stopped mid-line?)"
                failure = RecordingFormatError(path, number, problem)
                if on_error is None:
                    raise failure from None
                on_error(failure)
                continue
            yield RecordedMessage(topic=topic, payload=payload, received_time_s=time_s, line=number)
