"""The dead-letter store, the ingest counters and the rejection log (offline: SQLite files only)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from pipesentinel.ingest.counters import IngestCounters, RejectionLog
from pipesentinel.ingest.dead_letter import PRUNE_TARGET_FRACTION, DeadLetterStore
from pipesentinel.ingest.records import Rejection, RejectReason
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.topics import MessageKind

T0_S = 1_700_000_000.0


def rejection(
    reason: RejectReason = RejectReason.BAD_JSON,
    *,
    time_s: float = T0_S,
    payload: bytes = b"\xff\x00not json",
    topic: str = "pipesentinel/v1/s/gas/G1",
) -> Rejection:
    return Rejection(
        reason=reason,
        detail=f"detail of {reason.value}",
        topic=topic,
        payload=payload,
        received_time_s=time_s,
    )


def test_rejections_round_trip_with_raw_bytes(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dead.sqlite3"
    batch = [
        rejection(RejectReason.BAD_JSON, time_s=T0_S),
        rejection(RejectReason.OUT_OF_RANGE, time_s=T0_S + 1, payload=b'{"ch4_ppm": -1}'),
        rejection(RejectReason.BAD_JSON, time_s=T0_S + 2, payload=bytes(range(256))),
    ]
    with DeadLetterStore(path) as store:
        assert store.add(batch) == 0
        stored = store.query()
        assert [letter.rejection() for letter in stored] == batch
        assert [letter.id for letter in stored] == sorted(letter.id for letter in stored)
        assert store.count() == 3
        assert store.payload_bytes() == sum(len(item.payload) for item in batch)
    # Durable: a new connection to the file sees the same rows.
    with DeadLetterStore(path) as reopened:
        assert [letter.rejection() for letter in reopened.query()] == batch
        assert reopened.count() == 3
        assert reopened.payload_bytes() == sum(len(item.payload) for item in batch)


def test_query_and_count_by_reason_and_time(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite3") as store:
        store.add(
            [
                rejection(RejectReason.BAD_JSON, time_s=T0_S),
                rejection(RejectReason.BAD_JSON, time_s=T0_S + 10),
                rejection(RejectReason.DUPLICATE, time_s=T0_S + 20),
                rejection(RejectReason.BAD_TOPIC, time_s=T0_S + 30),
            ]
        )
        assert store.count_by_reason() == {
            RejectReason.BAD_JSON: 2,
            RejectReason.DUPLICATE: 1,
            RejectReason.BAD_TOPIC: 1,
        }
        # Half-open ranges: start inclusive, end exclusive.
        assert store.count_by_reason(start_s=T0_S + 10, end_s=T0_S + 30) == {
            RejectReason.BAD_JSON: 1,
            RejectReason.DUPLICATE: 1,
        }
        only_json = store.query(reason=RejectReason.BAD_JSON)
        assert [letter.received_time_s for letter in only_json] == [T0_S, T0_S + 10]
        assert store.query(reason=RejectReason.BAD_JSON, start_s=T0_S + 5) == only_json[1:]
        assert len(store.query(limit=3)) == 3
        assert store.query(reason=RejectReason.OVERSIZED) == []
        assert store.add([]) == 0


def test_row_retention_prunes_oldest_and_counts_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    max_rows = 10
    with DeadLetterStore(tmp_path / "dead.sqlite3", max_rows=max_rows) as store:
        store.add([rejection(RejectReason.BAD_JSON, time_s=T0_S + index) for index in range(6)])
        store.add(
            [rejection(RejectReason.DUPLICATE, time_s=T0_S + 6 + index) for index in range(4)]
        )
        assert store.count() == max_rows
        assert store.pruned_by_reason() == {}
        with caplog.at_level(logging.WARNING, logger="pipesentinel.ingest.dead_letter"):
            pruned = store.add([rejection(RejectReason.BAD_TOPIC, time_s=T0_S + 10)])
        # 11 rows > 10: pruned down to 0.9 x 10 = 9, the two oldest (both bad_json) go.
        assert pruned == 11 - int(max_rows * PRUNE_TARGET_FRACTION) == 2
        assert store.count() == 9
        assert store.pruned_by_reason() == {RejectReason.BAD_JSON: 2}
        times = [letter.received_time_s for letter in store.query()]
        assert times == [T0_S + index for index in range(2, 11)]
        assert "pruned 2 oldest rejection(s): bad_json=2" in caplog.text
    with DeadLetterStore(tmp_path / "dead.sqlite3", max_rows=max_rows) as reopened:
        assert reopened.pruned_by_reason() == {RejectReason.BAD_JSON: 2}


def test_payload_byte_retention(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite3", max_payload_bytes=1000) as store:
        for index in range(4):
            store.add([rejection(RejectReason.BAD_IMAGE, time_s=T0_S + index, payload=b"x" * 300)])
        # 1200 bytes > 1000: keep the newest rows within 900 bytes, i.e. three of 300.
        assert store.count() == 3
        assert store.payload_bytes() == 900
        assert store.pruned_by_reason() == {RejectReason.BAD_IMAGE: 1}
        # A single payload larger than the whole budget cannot be kept either: pruned, counted.
        store.add([rejection(RejectReason.OVERSIZED, time_s=T0_S + 9, payload=b"y" * 2000)])
        assert store.count() == 0
        assert store.pruned_by_reason() == {RejectReason.BAD_IMAGE: 4, RejectReason.OVERSIZED: 1}


def test_age_retention_is_relative_to_the_newest_row(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite3", max_age_s=100.0) as store:
        store.add([rejection(time_s=T0_S), rejection(time_s=T0_S + 50)])
        assert store.count() == 2
        store.add([rejection(RejectReason.DUPLICATE, time_s=T0_S + 120)])
        assert [letter.received_time_s for letter in store.query()] == [T0_S + 50, T0_S + 120]
        assert store.pruned_by_reason() == {RejectReason.BAD_JSON: 1}


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    with DeadLetterStore(tmp_path / "dead.sqlite3") as store:

        def write(worker: int) -> None:
            for index in range(25):
                store.add([rejection(time_s=T0_S + worker * 100 + index)])

        threads = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.count() == 100
        assert store.count_by_reason() == {RejectReason.BAD_JSON: 100}


def test_errors_are_storage_errors_naming_the_file(tmp_path: Path) -> None:
    store = DeadLetterStore(tmp_path / "dead.sqlite3")
    store.close()
    store.close()  # idempotent
    with pytest.raises(StorageError, match="closed"):
        store.add([rejection()])
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StorageError, match="cannot open"):
        DeadLetterStore(blocker / "dead.sqlite3")
    with pytest.raises(ValueError, match="max_rows"):
        DeadLetterStore(tmp_path / "x.sqlite3", max_rows=0)
    with pytest.raises(ValueError, match="max_age_s"):
        DeadLetterStore(tmp_path / "x.sqlite3", max_age_s=0.0)


# --- counters and the rejection log ---------------------------------------------------------------


def test_counters_snapshot() -> None:
    counters = IngestCounters()
    counters.accepted(MessageKind.GAS)
    counters.accepted(MessageKind.GAS)
    counters.accepted(MessageKind.THERMAL)
    counters.rejected(RejectReason.BAD_JSON)
    counters.written(records=3, rejections=1)
    counters.storage_retry("disk full")
    counters.queue_overflow()
    counters.left_for_redelivery(4)
    snapshot = counters.snapshot()
    assert snapshot.accepted_by_kind == {MessageKind.GAS: 2, MessageKind.THERMAL: 1}
    assert snapshot.accepted == 3
    assert snapshot.rejected == 1
    assert (snapshot.batches_written, snapshot.records_written) == (1, 3)
    assert snapshot.rejections_dead_lettered == 1
    assert (snapshot.storage_retries, snapshot.queue_overflows) == (1, 1)
    assert snapshot.left_for_redelivery == 4
    assert snapshot.last_error == "disk full"
    counters.accepted(MessageKind.GAS)
    assert snapshot.accepted_by_kind[MessageKind.GAS] == 2  # a copy, not a view


def test_counters_are_thread_safe() -> None:
    counters = IngestCounters()

    def count() -> None:
        for _ in range(5000):
            counters.accepted(MessageKind.WIND)
            counters.rejected(RejectReason.DUPLICATE)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    snapshot = counters.snapshot()
    assert snapshot.accepted_by_kind == {MessageKind.WIND: 20_000}
    assert snapshot.rejected_by_reason == {RejectReason.DUPLICATE: 20_000}


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_rejection_log_first_of_each_reason_then_every_nth(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    log = RejectionLog(logging.getLogger("test.rejections"), every_nth=5, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.rejections"):
        log.record(rejection(RejectReason.BAD_JSON))
        assert len(caplog.records) == 1
        assert "first bad_json rejection: detail of bad_json" in _messages(caplog)[0]
        for _ in range(4):
            log.record(rejection(RejectReason.BAD_JSON))
        log.record(rejection(RejectReason.OUT_OF_RANGE))  # first of its reason: logged at once
        assert len(caplog.records) == 2
        log.record(rejection(RejectReason.BAD_JSON))  # the 5th since the first: a summary
        assert len(caplog.records) == 3
        assert _messages(caplog)[2].startswith("5 more rejection(s)")
        assert "bad_json=5" in _messages(caplog)[2]
        # 1000 more of the same cost 200 lines, not 1000.
        for _ in range(1000):
            log.record(rejection(RejectReason.BAD_JSON))
        assert len(caplog.records) == 3 + 200
        assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_rejection_log_interval_and_flush(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    log = RejectionLog(
        logging.getLogger("test.interval"), every_nth=100, interval_s=60.0, clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="test.interval"):
        log.record(rejection(RejectReason.DUPLICATE))
        log.record(rejection(RejectReason.DUPLICATE))
        log.flush()  # not due yet
        assert len(caplog.records) == 1
        clock.now_s = 61.0
        log.flush()
        assert len(caplog.records) == 2
        assert "1 more rejection(s) in the last 61 s: duplicate=1" in _messages(caplog)[1]
        log.flush(force=True)  # nothing pending: nothing logged
        assert len(caplog.records) == 2
        log.record(rejection(RejectReason.DUPLICATE))
        log.flush(force=True)
        assert len(caplog.records) == 3
    with pytest.raises(ValueError, match="every_nth"):
        RejectionLog(logging.getLogger("x"), every_nth=0)
