"""Emergency responses kept with their incidents: every version, append-only, in SQLite.

One row per incident version answered (:class:`~pipesentinel.plans.response.EmergencyResponse`):
the response JSON (leak estimate, isolation, zones, people, plan and rationale), the CAP 1.2 alert
exactly as published and the zones as GeoJSON. Rows cannot be updated or deleted (triggers abort):
what responders were told, and when, stays on record. After a restart the latest alert of each
incident comes back so that the next one is an ``Update`` that references it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipesentinel.ingest.storage.sqlite_file import SqliteFile

__all__ = ["ResponseStore", "StoredResponse"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    incident_id TEXT NOT NULL,
    incident_version INTEGER NOT NULL,
    time_s REAL NOT NULL,
    plan_id TEXT NOT NULL,
    cap_identifier TEXT NOT NULL,
    body TEXT NOT NULL,
    cap_xml TEXT NOT NULL,
    geojson TEXT NOT NULL,
    PRIMARY KEY (incident_id, incident_version)
);
CREATE TRIGGER IF NOT EXISTS responses_no_update
BEFORE UPDATE ON responses
BEGIN SELECT RAISE(ABORT, 'responses is append-only'); END;
CREATE TRIGGER IF NOT EXISTS responses_no_delete
BEFORE DELETE ON responses
BEGIN SELECT RAISE(ABORT, 'responses is append-only'); END;
"""

_COLUMNS = "incident_id, incident_version, time_s, plan_id, cap_identifier, body, cap_xml, geojson"


@dataclass(frozen=True)
class StoredResponse:
    """One stored response."""

    incident_id: str
    incident_version: int
    time_s: float  # [s] epoch
    plan_id: str
    cap_identifier: str
    body: dict[str, Any]
    cap_xml: str
    geojson: dict[str, Any]


def _row(row: tuple[Any, ...]) -> StoredResponse:
    return StoredResponse(
        incident_id=str(row[0]),
        incident_version=int(row[1]),
        time_s=float(row[2]),
        plan_id=str(row[3]),
        cap_identifier=str(row[4]),
        body=json.loads(row[5]),
        cap_xml=str(row[6]),
        geojson=json.loads(row[7]),
    )


class ResponseStore(SqliteFile):
    """Append-only store of the responses to incident versions.

    Parameters
    ----------
    path
        SQLite file (created with its folder).
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, what="response store")
        self._apply_schema(_SCHEMA)

    def append(
        self,
        *,
        incident_id: str,
        incident_version: int,
        time_s: float,
        plan_id: str,
        cap_identifier: str,
        body: dict[str, Any],
        cap_xml: str,
        geojson: dict[str, Any],
    ) -> bool:
        """Store one response; ``False`` (nothing written) if that version is already stored."""
        row = (
            incident_id,
            incident_version,
            time_s,
            plan_id,
            cap_identifier,
            json.dumps(body, sort_keys=True, allow_nan=False),
            cap_xml,
            json.dumps(geojson, sort_keys=True, allow_nan=False),
        )
        with self._transaction() as database:
            cursor = database.execute(
                f"INSERT OR IGNORE INTO responses ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant column list
                row,
            )
            return cursor.rowcount == 1

    def latest(self, incident_id: str) -> StoredResponse | None:
        """The latest response to one incident, or ``None``."""
        with self._lock:
            row = (
                self._database()
                .execute(
                    f"SELECT {_COLUMNS} FROM responses WHERE incident_id = ? "  # noqa: S608 - constant column list
                    "ORDER BY incident_version DESC LIMIT 1",
                    (incident_id,),
                )
                .fetchone()
            )
        return None if row is None else _row(row)

    def history(self, incident_id: str) -> list[StoredResponse]:
        """Every response to one incident, oldest first."""
        with self._lock:
            rows = (
                self._database()
                .execute(
                    f"SELECT {_COLUMNS} FROM responses WHERE incident_id = ? "  # noqa: S608 - constant column list
                    "ORDER BY incident_version",
                    (incident_id,),
                )
                .fetchall()
            )
        return [_row(row) for row in rows]
