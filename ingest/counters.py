"""Thread-safe ingest counters and rejection logging that does not flood.

:class:`IngestCounters` counts accepted messages by kind and rejected ones by reason, plus the
writer's batches, retries and errors; :meth:`IngestCounters.snapshot` copies them at once.

:class:`RejectionLog` logs the first rejection of each reason at WARNING with its detail and
topic, then one summary line (counts by reason since the previous summary) every ``every_nth``
rejections or every ``interval_s`` seconds, whichever comes first, so a device stuck in a loop of
bad messages costs one log line per ``every_nth`` messages, not one per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from pipesentinel.ingest.records import Rejection, RejectReason
from pipesentinel.ingest.topics import MessageKind

DEFAULT_SUMMARY_INTERVAL_S: Final = 60.0
_TOPIC_CHARS: Final = 120


@dataclass(frozen=True)
class CounterSnapshot:
    """The ingest counters at one moment."""

    accepted_by_kind: Mapping[MessageKind, int]
    rejected_by_reason: Mapping[RejectReason, int]
    batches_written: int
    records_written: int
    rejections_dead_lettered: int
    storage_retries: int
    queue_overflows: int
    subscriber_errors: int
    left_for_redelivery: int
    service_messages_passed: int
    last_error: str | None

    @property
    def accepted(self) -> int:
        """All accepted messages."""
        return sum(self.accepted_by_kind.values())

    @property
    def rejected(self) -> int:
        """All rejected messages."""
        return sum(self.rejected_by_reason.values())


@dataclass
class IngestCounters:
    """Counters of the ingest service; every method is thread-safe."""

    _accepted: Counter[MessageKind] = field(default_factory=Counter)
    _rejected: Counter[RejectReason] = field(default_factory=Counter)
    _batches_written: int = 0
    _records_written: int = 0
    _rejections_dead_lettered: int = 0
    _storage_retries: int = 0
    _queue_overflows: int = 0
    _subscriber_errors: int = 0
    _left_for_redelivery: int = 0
    _service_messages_passed: int = 0
    _last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accepted(self, kind: MessageKind) -> None:
        """One validated message of ``kind`` was queued for storage."""
        with self._lock:
            self._accepted[kind] += 1

    def rejected(self, reason: RejectReason) -> None:
        """One message was rejected for ``reason``."""
        with self._lock:
            self._rejected[reason] += 1

    def written(self, *, records: int, rejections: int) -> None:
        """One batch was made durable: ``records`` stored, ``rejections`` dead-lettered."""
        with self._lock:
            self._batches_written += 1
            self._records_written += records
            self._rejections_dead_lettered += rejections

    def storage_retry(self, error: str) -> None:
        """A batch failed to store and will be retried; ``error`` describes why."""
        with self._lock:
            self._storage_retries += 1
            self._last_error = error

    def queue_overflow(self) -> None:
        """The bounded queue was full when a message arrived."""
        with self._lock:
            self._queue_overflows += 1

    def subscriber_error(self, error: str) -> None:
        """A batch subscriber raised."""
        with self._lock:
            self._subscriber_errors += 1
            self._last_error = error

    def left_for_redelivery(self, messages: int) -> None:
        """``messages`` were taken but not acknowledged: the broker will deliver them again."""
        with self._lock:
            self._left_for_redelivery += messages

    def service_message_passed(self) -> None:
        """A message on the service's own output topics (alarms, incidents) was passed by."""
        with self._lock:
            self._service_messages_passed += 1

    def error(self, error: str) -> None:
        """Remember ``error`` as the last error (connection failures and the like)."""
        with self._lock:
            self._last_error = error

    def snapshot(self) -> CounterSnapshot:
        """A consistent copy of every counter."""
        with self._lock:
            return CounterSnapshot(
                accepted_by_kind=dict(self._accepted),
                rejected_by_reason=dict(self._rejected),
                batches_written=self._batches_written,
                records_written=self._records_written,
                rejections_dead_lettered=self._rejections_dead_lettered,
                storage_retries=self._storage_retries,
                queue_overflows=self._queue_overflows,
                subscriber_errors=self._subscriber_errors,
                left_for_redelivery=self._left_for_redelivery,
                service_messages_passed=self._service_messages_passed,
                last_error=self._last_error,
            )


class RejectionLog:
    """Logs rejections without flooding: first of each reason, then periodic summaries.

    Parameters
    ----------
    logger
        Where to log.
    every_nth
        A summary line after this many rejections since the last one
        (``settings.ingest.log_every_nth_rejection``) [-].
    interval_s
        ... or once this long has passed since the last summary, at the next rejection or
        :meth:`flush` [s].
    clock
        Monotonic clock [s]; tests pass their own.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        every_nth: int,
        interval_s: float = DEFAULT_SUMMARY_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if every_nth < 1:
            raise ValueError(f"every_nth must be at least 1, got {every_nth}")
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._logger = logger
        self._every_nth = every_nth
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: set[RejectReason] = set()
        self._pending: Counter[RejectReason] = Counter()
        self._last_summary_s = clock()

    def record(self, rejection: Rejection) -> None:
        """Count ``rejection`` and log what is due."""
        first = False
        summary: str | None = None
        with self._lock:
            if rejection.reason not in self._seen:
                self._seen.add(rejection.reason)
                first = True
            else:
                self._pending[rejection.reason] += 1
                summary = self._due_summary(force=False)
        if first:
            topic = rejection.topic
            if len(topic) > _TOPIC_CHARS:
                topic = topic[:_TOPIC_CHARS] + "..."
            self._logger.warning(
                "first %s rejection: %s (topic %r, %d bytes); further ones are summarised",
                rejection.reason.value,
                rejection.detail,
                topic,
                len(rejection.payload),
            )
        if summary is not None:
            self._logger.warning("%s", summary)

    def flush(self, *, force: bool = False) -> None:
        """Log the pending summary if its interval has passed (or at once with ``force``)."""
        with self._lock:
            summary = self._due_summary(force=force)
        if summary is not None:
            self._logger.warning("%s", summary)

    def _due_summary(self, *, force: bool) -> str | None:
        pending = sum(self._pending.values())
        if not pending:
            return None
        now = self._clock()
        due = pending >= self._every_nth or now - self._last_summary_s >= self._interval_s
        if not (due or force):
            return None
        counts = ", ".join(
            f"{reason.value}={count}" for reason, count in sorted(self._pending.items())
        )
        text = (
            f"{pending} more rejection(s) in the last {now - self._last_summary_s:.0f} s: {counts}"
        )
        self._pending.clear()
        self._last_summary_s = now
        return text
