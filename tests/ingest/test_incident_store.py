"""The incident store keeps every version, returns the latest, and refuses rewrites."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from pipesentinel.detection.incidents import Evidence, Incident, IncidentStatus
from pipesentinel.ingest.storage.incidents import IncidentStore


def _incident(version: int, status: IncidentStatus = IncidentStatus.OPEN) -> Incident:
    return Incident(
        id="INC-wanli-20240409T001000-0001",
        site_id="wanli",
        opened_time_s=600.0,
        updated_time_s=600.0 + version,
        version=version,
        status=status,
        zones=("P1-S3",),
        gases=("methane",),
        evidence=(Evidence(600.0, "GD07", "gas.low", "GD07 methane 22 %LEL", 0.22, "P1-S3"),),
        vote_reasons={"P1-S3": "zone P1-S3: confirmed: 2 of 2 healthy detectors at LOW"},
        localisation={"segment_id": "P1-S3", "chainage_m": 2231.0},
        timeline=((600.0, "opened"),),
        active_zones=("P1-S3",),
    )


def test_latest_version_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "incidents.sqlite3"
    with IncidentStore(path) as store:
        store.append([_incident(1)])
        store.append([_incident(2), replace(_incident(1), id="INC-wanli-x-0002")])
    with IncidentStore(path) as store:
        latest = store.latest()
        assert [(i.id, i.version) for i in latest] == [
            ("INC-wanli-20240409T001000-0001", 2),
            ("INC-wanli-x-0002", 1),
        ]
        assert latest[0] == _incident(2)
        assert [i.version for i in store.history("INC-wanli-20240409T001000-0001")] == [1, 2]


def test_rows_cannot_be_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "incidents.sqlite3"
    with IncidentStore(path) as store:
        store.append([_incident(1)])
        with pytest.raises(sqlite3.IntegrityError):
            store.append([_incident(1)])  # the same version twice
    connection = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        connection.execute("UPDATE incident_versions SET status = 'closed'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        connection.execute("DELETE FROM incident_versions")
    connection.close()
