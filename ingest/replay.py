"""Replay a recording through the live pipeline, as fast as possible, deterministically.

A recording (``settings.ingest.record_path``, :mod:`pipesentinel.ingest.recording`) holds every
message the service received with its receive time. :func:`replay` feeds it through the same
stages as the live service — the contract decoder with the recorded receive time as its clock,
the per-device sequence tracker, the telemetry store (SQLite in the output folder) and the
dead-letter store, then the :class:`~pipesentinel.detection.engine.DetectionEngine` with a fresh
alarm journal and incident store — in batches cut at every ``settings.detection.tick_period_s``
of recorded time, each followed by the engine's tick, as the live service does every tick
period. Nothing depends on the wall clock, so two replays of one recording write the same report.

Outputs in ``out_dir``: ``report.json`` (counts, rejections by reason, the alarm timeline, faults,
incidents with their localisation, the alarm KPIs), ``alarm_journal.sqlite3``,
``incidents.sqlite3``, ``telemetry.sqlite3``, ``dead_letter.sqlite3``.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pipesentinel.alarm_config import AlarmConfig, load_alarm_config
from pipesentinel.detection.alarms import AlarmEvent, AlarmKind, EventType, alarm_kpis
from pipesentinel.detection.engine import DetectionEngine
from pipesentinel.detection.incidents import Incident
from pipesentinel.ingest.contract import Decoder, SequenceTracker
from pipesentinel.ingest.dead_letter import DeadLetterStore
from pipesentinel.ingest.recording import RecordingFormatError, read_recording
from pipesentinel.ingest.records import Record, Rejection
from pipesentinel.ingest.storage.incidents import IncidentStore
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import is_service_output
from pipesentinel.settings import Settings
from pipesentinel.site import Site

REPORT_NAME: Final = "report.json"
OUTPUT_FILES: Final = (
    "alarm_journal.sqlite3",
    "incidents.sqlite3",
    "telemetry.sqlite3",
    "dead_letter.sqlite3",
)
TIMELINE_EVENTS: Final = frozenset(
    {
        EventType.ACTIVATED,
        EventType.CLEARED,
        EventType.ACKNOWLEDGED,
        EventType.RESET,
        EventType.SHELVED,
        EventType.SUPPRESSED,
        EventType.FLOOD_STARTED,
        EventType.FLOOD_ENDED,
    }
)


@dataclass
class _Tally:
    messages: int = 0
    records: Counter[str] = field(default_factory=Counter)
    rejections: Counter[str] = field(default_factory=Counter)
    bad_lines: list[dict[str, Any]] = field(default_factory=list)
    service_messages: int = 0
    events: list[AlarmEvent] = field(default_factory=list)


class ReplayError(RuntimeError):
    """The replay cannot run (unreadable recording, output folder not writable)."""


class PipelineRun:
    """The live pipeline's stages, fed one message at a time (replay and ``simulate``)."""

    def __init__(
        self, out: Path, settings: Settings, site: Site, alarm_config: AlarmConfig | None
    ) -> None:
        self.decoder = Decoder(sites=site, limits=settings.ingest)
        self.tracker = SequenceTracker()
        self.tally = _Tally()
        self.journal = SqliteAlarmJournal(out / "alarm_journal.sqlite3")
        self.incidents = IncidentStore(out / "incidents.sqlite3")
        self.store = SQLiteStore(out / "telemetry.sqlite3")
        self.dead_letters = DeadLetterStore(out / "dead_letter.sqlite3")
        self.engine = DetectionEngine(
            site,
            alarm_config=alarm_config or load_alarm_config(settings.site_dir, site),
            lel_basis=settings.lel_basis,
            journal=self.journal,
            alarm_settings=settings.alarms,
            detection_settings=settings.detection,
        )
        self.batch: list[Record] = []
        self.rejected: list[Rejection] = []

    def take(self, topic: str, payload: bytes, received_s: float) -> None:
        """Decode one message as received at ``received_s`` [s] and queue it for the batch."""
        self.tally.messages += 1
        if is_service_output(topic):
            self.tally.service_messages += 1
            return
        result = self.decoder(topic, payload, received_s)
        if not isinstance(result, Rejection):
            refusal = self.tracker.admit(result, topic=topic, payload=payload)
            result = refusal if refusal is not None else result
        if isinstance(result, Rejection):
            self.tally.rejections[result.reason.value] += 1
            self.rejected.append(result)
        else:
            self.tally.records[type(result).__name__] += 1
            self.batch.append(result)

    def flush(self, tick_s: float) -> list[Incident]:
        """Store the batch, dead-letter its rejections, run detection on it, then tick.

        Returns the incident versions this produced, in order.
        """
        self.store.write(self.batch)
        if self.rejected:
            self.dead_letters.add(self.rejected)
        changed: list[Incident] = []
        for output in (self.engine.process(self.batch), self.engine.tick(tick_s)):
            self.tally.events.extend(output.alarm_events)
            self.incidents.append(output.incidents)
            changed.extend(output.incidents)
        self.batch.clear()
        self.rejected.clear()
        return changed

    def bad_line(self, error: RecordingFormatError) -> None:
        """Count an unreadable recording line for the report."""
        self.tally.bad_lines.append({"line": error.line, "problem": error.problem})

    def close(self) -> None:
        """Close the stores."""
        self.journal.close()
        self.incidents.close()
        self.store.close()
        self.dead_letters.close()


def replay(
    recording: Path | str,
    *,
    out_dir: Path | str,
    settings: Settings,
    site: Site,
    alarm_config: AlarmConfig | None = None,
) -> dict[str, Any]:
    """Feed ``recording`` through decode, storage and detection; write and return the report."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # a replay starts from nothing: the result depends on the input only
        for suffix in ("", "-wal", "-shm"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    period_s = settings.detection.tick_period_s
    run = PipelineRun(out, settings, site, alarm_config)
    try:
        boundary = -math.inf
        first_s: float | None = None
        last_s = 0.0
        for message in read_recording(recording, on_error=run.bad_line):
            received_s = message.received_time_s
            if first_s is None:
                first_s = received_s
                boundary = next_boundary(received_s, period_s)
            while received_s >= boundary:
                run.flush(boundary)
                boundary += period_s
            last_s = max(last_s, received_s)
            run.take(message.topic, message.payload, received_s)
        if first_s is not None:
            run.flush(boundary)
        report = pipeline_report(
            run.tally, run.engine, run.incidents, start_s=first_s or 0.0, end_s=last_s
        )
    except OSError as error:
        raise ReplayError(f"replay of {recording}: {error}") from error
    finally:
        run.close()
    (out / REPORT_NAME).write_text(
        json.dumps(report, indent=2, sort_keys=True, allow_nan=False, default=_jsonable) + "\n",
        encoding="utf-8",
    )
    return report


def next_boundary(time_s: float, period_s: float) -> float:
    """The first tick boundary after ``time_s`` on a grid of ``period_s`` [s]."""
    return (math.floor(time_s / period_s) + 1) * period_s


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def pipeline_report(
    tally: _Tally,
    engine: DetectionEngine,
    incidents: IncidentStore,
    *,
    start_s: float,
    end_s: float,
) -> dict[str, Any]:
    """Counts, rejections, the alarm timeline, faults, incidents and KPIs of a run."""
    timeline: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    for event in tally.events:
        if event.event not in TIMELINE_EVENTS:
            continue
        definition = engine.definition(event.alarm_id) if event.alarm_id else None
        item = {
            "time_s": event.time_s,
            "offset_s": round(event.time_s - start_s, 3),
            "event": event.event.value,
            "alarm_id": event.alarm_id,
            "to_state": event.to_state.value if event.to_state else None,
            "priority": definition.priority.value if definition else None,
            "kind": definition.kind.value if definition else None,
            "value": _finite(event.value),
            "detail": event.detail,
        }
        timeline.append(item)
        if definition is not None and definition.kind is AlarmKind.FAULT:
            faults.append(item)
    kpis = alarm_kpis(tally.events, start_s=start_s, end_s=max(end_s, start_s + 1.0))
    return {
        "site_id": engine.site.id,
        "lel_basis": engine.lel_basis.value,
        "start_time_s": start_s,
        "end_time_s": end_s,
        "messages": tally.messages,
        "service_messages_ignored": tally.service_messages,
        "records": dict(sorted(tally.records.items())),
        "rejections": dict(sorted(tally.rejections.items())),
        "bad_lines": tally.bad_lines,
        "alarm_timeline": timeline,
        "faults": faults,
        "incidents": [incident.to_json() for incident in incidents.latest()],
        "kpis": kpis.as_json_dict(),
    }


def summary_lines(report: dict[str, Any]) -> Sequence[str]:
    """A few lines for the terminal."""
    activations = [e for e in report["alarm_timeline"] if e["event"] == "activated"]
    lines = [
        f"{report['messages']} messages: "
        + ", ".join(f"{n} {kind}" for kind, n in report["records"].items())
        + (f"; rejected {sum(report['rejections'].values())}" if report["rejections"] else ""),
        f"{len(activations)} alarm activations, {len(report['faults'])} fault events, "
        f"{len(report['incidents'])} incident(s)",
    ]
    for incident in report["incidents"]:
        where = incident.get("localisation") or {}
        lines.append(
            f"  {incident['incident_id']}: zones {', '.join(incident['zones'])}; "
            f"{incident['timeline'][-1]['text'] if incident['timeline'] else ''}"[:200]
            + ("" if where else " (not localised)")
        )
    return lines
