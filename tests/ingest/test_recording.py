"""The message recording: line format, round trips, appending, and malformed lines reported.

Offline: no broker (the recording through a real Mosquitto and the ingest service is in
``test_service.py``, next to that service's helpers).
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipesentinel.ingest.recording import (
    RecordedMessage,
    RecordingFormatError,
    RecordingWriter,
    read_recording,
    record_line,
)

TOPIC = "pipesentinel/v1/wanli/gas/G01"


def test_record_line_of_text_and_binary_payloads() -> None:
    # Hand-worked expected lines: JSON string escapes, shortest float repr, RFC 4648 base64.
    assert record_line(TOPIC, b'{"seq":1}', 1.5) == (
        b'{"topic": "pipesentinel/v1/wanli/gas/G01", "received_time_s": 1.5, '
        b'"payload": "{\\"seq\\":1}"}\n'
    )
    assert record_line("t", b"\xff\x00\x01", 1800000000.125) == (
        b'{"topic": "t", "received_time_s": 1800000000.125, "payload_base64": "/wAB"}\n'
    )
    # Valid UTF-8 stays text, escaped to ASCII; an empty payload is the empty text.
    assert json.loads(record_line("t/\u00e9", "\u00b0C\n".encode(), 2.0)) == {
        "topic": "t/\u00e9",
        "received_time_s": 2.0,
        "payload": "\u00b0C\n",
    }
    assert record_line("t/\u00e9", b"\xc2\xb0", 2.0).isascii()
    assert json.loads(record_line("t", b"", 3.0))["payload"] == ""


@pytest.mark.parametrize("time_s", [math.nan, math.inf, -math.inf])
def test_record_line_refuses_a_non_finite_time(time_s: float) -> None:
    with pytest.raises(ValueError, match="received_time_s must be finite"):
        record_line(TOPIC, b"x", time_s)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(
        st.tuples(
            st.text(max_size=40),
            st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode)),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=20,
    )
)
def test_round_trip_of_any_topic_payload_and_time(
    tmp_path_factory: pytest.TempPathFactory, messages: list[tuple[str, bytes, float]]
) -> None:
    path = tmp_path_factory.mktemp("recording") / "recording.jsonl"
    with RecordingWriter(path) as writer:
        for topic, payload, time_s in messages:
            writer.write(topic, payload, time_s)
        assert writer.messages_written == len(messages)
    read = list(read_recording(path))
    assert [(m.topic, m.payload, m.received_time_s) for m in read] == messages
    assert [m.line for m in read] == list(range(1, len(messages) + 1))
    # One message per line: the file has exactly as many line breaks as messages.
    assert path.read_bytes().count(b"\n") == len(messages)


def test_text_and_binary_payloads_round_trip_with_their_fields(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "recording.jsonl"  # the directory is created
    png = b"\x89PNG\r\n\x1a\n\x00\x00"
    with RecordingWriter(path) as writer:
        writer.write(TOPIC, b'{"ts": 1}', 10.0)
        writer.write("pipesentinel/v1/wanli/camera/C01/thermal", png, 11.0)
        writer.write("pipesentinel/v1/wanli/status/G01", b"online", 12.0)
    lines = [json.loads(line) for line in path.read_text("ascii").splitlines()]
    assert [sorted(line) for line in lines] == [
        ["payload", "received_time_s", "topic"],
        ["payload_base64", "received_time_s", "topic"],
        ["payload", "received_time_s", "topic"],
    ]
    assert base64.b64decode(lines[1]["payload_base64"]) == png
    assert list(read_recording(path)) == [
        RecordedMessage(TOPIC, b'{"ts": 1}', 10.0, 1),
        RecordedMessage("pipesentinel/v1/wanli/camera/C01/thermal", png, 11.0, 2),
        RecordedMessage("pipesentinel/v1/wanli/status/G01", b"online", 12.0, 3),
    ]


def test_buffered_lines_reach_the_file_on_flush(tmp_path: Path) -> None:
    path = tmp_path / "recording.jsonl"
    writer = RecordingWriter(path)
    try:
        writer.write(TOPIC, b"x", 1.0)
        unflushed = [writer.unflushed]
        assert path.read_bytes() == b""  # still in the buffer
        writer.flush()
        unflushed.append(writer.unflushed)
        assert unflushed == [True, False]
        assert path.read_bytes() == record_line(TOPIC, b"x", 1.0)
    finally:
        writer.close()
    writer.close()  # idempotent
    assert writer.closed


def test_appending_isolates_a_line_broken_by_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "recording.jsonl"
    whole = record_line(TOPIC, b"a", 1.0)
    path.write_bytes(whole + whole[:20])  # a writer died in the middle of its second line
    with RecordingWriter(path) as writer:
        writer.write(TOPIC, b"b", 2.0)
    errors: list[RecordingFormatError] = []
    read = list(read_recording(path, on_error=errors.append))
    assert [(m.payload, m.line) for m in read] == [(b"a", 1), (b"b", 3)]
    assert [(error.path, error.line) for error in errors] == [(path, 2)]
    assert "not valid JSON" in errors[0].problem


MALFORMED = [
    (b"not json", "not valid JSON"),
    (b'["topic"]', "a JSON list, expected an object"),
    (b'{"received_time_s": 1, "payload": ""}', "missing field(s) 'topic'"),
    (b'{"topic": "t", "payload": ""}', "missing field(s) 'received_time_s'"),
    (b'{"topic": "t", "received_time_s": 1}', "exactly one of 'payload' and 'payload_base64'"),
    (
        b'{"topic": "t", "received_time_s": 1, "payload": "", "payload_base64": ""}',
        "exactly one of",
    ),
    (b'{"topic": "t", "received_time_s": 1, "payload": "", "qos": 1}', "unknown field(s) 'qos'"),
    (b'{"topic": 5, "received_time_s": 1, "payload": ""}', "field 'topic': expected a string"),
    (b'{"topic": "t", "received_time_s": true, "payload": ""}', "expected a number, got True"),
    (b'{"topic": "t", "received_time_s": "1", "payload": ""}', "expected a number, got '1'"),
    (b'{"topic": "t", "received_time_s": NaN, "payload": ""}', "nan is not finite"),
    (b'{"topic": "t", "received_time_s": 1e999, "payload": ""}', "inf is not finite"),
    (b'{"topic": "t", "received_time_s": 1, "payload": 7}', "field 'payload': expected a string"),
    (b'{"topic": "t", "received_time_s": 1, "payload_base64": "%%%"}', "not valid base64"),
    (b'{"topic": "t", "received_time_s": 1, "payload": "\\ud800"}', "lone surrogate"),
    (b"\xff\xfe{}", "not UTF-8 text"),
    (b"", "empty line"),
]


@pytest.mark.parametrize(("line", "problem"), MALFORMED)
def test_a_malformed_line_is_reported_with_file_and_line(
    tmp_path: Path, line: bytes, problem: str
) -> None:
    path = tmp_path / "recording.jsonl"
    good = record_line(TOPIC, b"ok", 1.0)
    path.write_bytes(good + line + b"\n" + good)
    with pytest.raises(RecordingFormatError) as raised:
        list(read_recording(path))
    assert raised.value.line == 2
    assert raised.value.path == path
    assert problem in raised.value.problem
    assert str(raised.value).startswith(f"{path}, line 2: ")
    # With on_error the replay reports the line and goes on.
    errors: list[RecordingFormatError] = []
    read = list(read_recording(path, on_error=errors.append))
    assert [m.line for m in read] == [1, 3]
    assert [error.line for error in errors] == [2]


def test_an_incomplete_last_line_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "recording.jsonl"
    whole = record_line(TOPIC, b"ok", 1.0)
    path.write_bytes(whole + whole[:-10])
    with pytest.raises(RecordingFormatError, match="last line is incomplete"):
        list(read_recording(path))
    # A whole last line without its line break is still a message.
    path.write_bytes(whole + whole[:-1])
    assert [m.line for m in read_recording(path)] == [1, 2]


def test_writer_options_fail_fast(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="buffer_bytes"):
        RecordingWriter(tmp_path / "r.jsonl", buffer_bytes=0)
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError, match="dir"):
        RecordingWriter(tmp_path / "dir")


def test_a_full_disk_is_an_os_error_on_flush() -> None:
    full = Path("/dev/full")
    if not full.exists():
        pytest.skip("no /dev/full on this system")
    writer = RecordingWriter(full)
    writer.write(TOPIC, b"x", 1.0)  # buffered
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    with pytest.raises(OSError, match="No space left"):
        writer.close()  # the buffered line still cannot be written
    assert writer.closed
