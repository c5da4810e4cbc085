"""Incident versions in SQLite: every version kept, append-only; the latest of each comes back.

One row per incident version (the JSON of ``Incident.to_json`` in ``detection/incidents.py``),
written with ``synchronous=FULL`` in WAL mode so that a version reported to people survives a power
cut. Rows cannot be updated or deleted (triggers abort), so the history of an incident — when it was
opened, joined, localised, closed and by whom — is an audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipesentinel.detection.incidents import Incident
from pipesentinel.ingest.storage.sqlite_file import SqliteFile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incident_versions (
    incident_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    updated_time_s REAL NOT NULL,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (incident_id, version)
);
CREATE TRIGGER IF NOT EXISTS incident_versions_no_update
BEFORE UPDATE ON incident_versions
BEGIN SELECT RAISE(ABORT, 'incident_versions is append-only'); END;
CREATE TRIGGER IF NOT EXISTS incident_versions_no_delete
BEFORE DELETE ON incident_versions
BEGIN SELECT RAISE(ABORT, 'incident_versions is append-only'); END;
"""


_LATEST_VERSIONS = """
SELECT body FROM incident_versions AS v
WHERE version = (SELECT MAX(version) FROM incident_versions WHERE incident_id = v.incident_id)
ORDER BY rowid
"""


class IncidentStore(SqliteFile):
    """Append-only store of incident versions.

    Parameters
    ----------
    path
        SQLite file (created with its folder).
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, what="incident store")
        self._apply_schema(_SCHEMA)

    def append(self, incidents: Sequence[Incident]) -> None:
        """Store new versions (one transaction); a version already stored is an error."""
        if not incidents:
            return
        rows = [
            (
                incident.id,
                incident.version,
                incident.updated_time_s,
                incident.status.value,
                json.dumps(incident.to_json(), sort_keys=True, allow_nan=False),
            )
            for incident in incidents
        ]
        with self._transaction() as database:
            database.executemany("INSERT INTO incident_versions VALUES (?, ?, ?, ?, ?)", rows)

    def latest(self) -> list[Incident]:
        """The latest version of every incident, oldest incident first."""
        with self._lock:
            rows = self._database().execute(_LATEST_VERSIONS).fetchall()
        return [Incident.from_json(json.loads(body)) for (body,) in rows]

    def history(self, incident_id: str) -> list[Incident]:
        """Every stored version of one incident, oldest first."""
        with self._lock:
            rows = (
                self._database()
                .execute(
                    "SELECT body FROM incident_versions WHERE incident_id = ? ORDER BY version",
                    (incident_id,),
                )
                .fetchall()
            )
        return [Incident.from_json(json.loads(body)) for (body,) in rows]
