"""The InfluxDB telemetry store: line protocol to ``/write``, InfluxQL on ``/query``.

These two HTTP endpoints exist on InfluxDB 1.x, on 2.x (v1 compatibility API, with a DBRP mapping
from the database name to a bucket) and on 3.x, so one backend serves all three.

Schema: one measurement per :class:`~pipesentinel.ingest.storage.base.RecordKind`; tags
``site_id``, ``device_id`` (and ``channel`` for camera frames); fields named as the record
fields in SI units, plus ``seq``, ``status``, ``fault_code`` and ``received_time_s``. A missing
optional value is an absent field, never zero. Timestamps are written with ``precision=ms``,
the resolution both backends keep. ``docs/storage.md`` lists every field.

Line protocol is encoded by ``influxdb_client.Point`` (its escaping, not ours); HTTP goes through
urllib3, which influxdb-client already depends on. ``write`` returns once InfluxDB answered
204 (the points are in its fsynced WAL); anything else raises :class:`StorageError` with the
server's error text, and the batch may be retried: points are identified by measurement, tags and
time, so a retry overwrites rather than duplicates.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import numpy as np
import urllib3
from influxdb_client.client.write.point import Point
from influxdb_client.domain.write_precision import WritePrecision

from pipesentinel.ingest.records import (
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
from pipesentinel.ingest.storage.base import (
    MILLISECONDS_PER_SECOND,
    Aggregate,
    DeviceState,
    RecordKind,
    Series,
    StorageError,
    check_storable,
    device_states,
    numeric_values,
    resolve_query,
    resolve_range,
    time_to_ms,
)
from pipesentinel.settings import StorageSettings

logger = logging.getLogger(__name__)

HTTP_OK: Final = 200
HTTP_NO_CONTENT: Final = 204  # /write and /ping success
# Points per HTTP request: InfluxData recommends batches of 5000 points (InfluxDB 1.x docs,
# "Optimize writes"); the body then stays far below the 25 MB default max-body-size.
MAX_POINTS_PER_REQUEST: Final = 5000
QUERY_CHUNK_ROWS: Final = 10_000  # rows per chunk of a chunked /query answer
SERVER_TEXT_CHARS: Final = 500  # how much of an unexpected server answer goes into an error

# The field present in every point, counted to count records of any kind.
_COUNTED_FIELD: Final = "received_time_s"
_READING_KINDS: Final = (
    RecordKind.GAS,
    RecordKind.WIND,
    RecordKind.LASER,
    RecordKind.CAMERA_FRAME,
)


class _UnreachableError(StorageError):
    """No answer from the server at all (refused, reset, timed out)."""


def influxql_string(value: str) -> str:
    """``value`` as an InfluxQL single-quoted string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def influxql_identifier(name: str) -> str:
    """``name`` as an InfluxQL double-quoted identifier."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


# influxdb-client has no type annotations; its Point is used through ``Any``.
_new_point: Any = Point


def _tag(name: str, value: str) -> str:
    if not value:
        raise ValueError(f"empty {name}: InfluxDB drops empty tags")
    return value


def line_protocol(record: Record) -> str:
    """One record as an InfluxDB line (ms precision); ``ValueError`` for a non-finite value."""
    kind = check_storable(record)
    point = _new_point(kind.value)
    point.tag("site_id", _tag("site_id", record.site_id))
    point.tag("device_id", _tag("device_id", record.device_id))
    if isinstance(record, GasReading | WindReading | LaserReading):
        for name, value in numeric_values(record).items():
            if value is not None:
                point.field(name, value)
        point.field("seq", int(record.seq))
        if isinstance(record, GasReading | LaserReading):
            point.field("status", DeviceStatus(record.status).value)
        if isinstance(record, GasReading) and record.fault_code is not None:
            point.field("fault_code", record.fault_code)
        time_ms = time_to_ms(record.time_s)
    elif isinstance(record, CameraFrame):
        point.tag("channel", record.channel.value)
        point.field("seq", int(record.seq))
        point.field("width_px", int(record.width_px))
        point.field("height_px", int(record.height_px))
        point.field("image_bytes", len(record.image))
        time_ms = time_to_ms(record.time_s)
    else:
        point.field("online", bool(record.online))
        time_ms = time_to_ms(record.received_time_s)
    point.field(_COUNTED_FIELD, float(record.received_time_s))
    point.time(time_ms, write_precision=WritePrecision.MS)
    line: str = point.to_line_protocol()
    return line


@dataclass(frozen=True)
class _ResultSeries:
    """One series of an InfluxQL answer."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]


class InfluxDBStore:
    """Telemetry in InfluxDB (a :class:`~pipesentinel.ingest.storage.base.TelemetryStore`).

    Parameters
    ----------
    url
        Base URL of the server, e.g. ``http://127.0.0.1:8086``.
    database
        InfluxDB 1.x database (2.x: the database of a DBRP mapping; 3.x: the database name).
    username, password
        HTTP basic authentication when both are given (2.x/3.x: any name and a token).
    timeout_s
        Connect and read timeout of each HTTP request [s].
    create_database
        Send ``CREATE DATABASE`` (idempotent) before the first request; a server that refuses it
        (2.x, 3.x, a non-admin user) is logged once and the database assumed to exist.
    """

    def __init__(
        self,
        *,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        create_database: bool = True,
    ) -> None:
        if not database:
            raise ValueError("InfluxDB database name is empty")
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"InfluxDB url must be http(s)://host:port, got {url!r}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        self.url = url.rstrip("/")
        self.database = database
        self.timeout_s = timeout_s
        self._headers: dict[str, str] = {}
        if username is not None and password is not None:
            self._headers.update(urllib3.util.make_headers(basic_auth=f"{username}:{password}"))
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s), retries=False
        )
        self._database_ready = threading.Event()
        if not create_database:
            self._database_ready.set()
        self._database_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> InfluxDBStore:
        """The store described by the ``storage`` settings section."""
        password = settings.influx_password
        return cls(
            url=settings.influx_url,
            database=settings.influx_database,
            username=settings.influx_username,
            password=None if password is None else password.get_secret_value(),
            timeout_s=settings.influx_timeout_s,
        )

    # -- HTTP ------------------------------------------------------------------------------

    def _request(
        self, path: str, *, what: str, params: dict[str, str], body: bytes | None = None
    ) -> urllib3.BaseHTTPResponse:
        target = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "text/plain; charset=utf-8"
        try:
            return self._http.request("POST", target, body=body, headers=headers)
        except urllib3.exceptions.HTTPError as error:
            raise _UnreachableError(
                f"InfluxDB at {self.url} unreachable ({what}): {error}"
            ) from error

    @staticmethod
    def _server_error(response: urllib3.BaseHTTPResponse) -> str:
        text = response.data.decode("utf-8", errors="replace").strip()
        try:
            answer = json.loads(text)
        except ValueError:
            return text[:SERVER_TEXT_CHARS] or response.reason or "no error text"
        if isinstance(answer, dict):
            for key in ("error", "message"):
                if isinstance(answer.get(key), str):
                    return str(answer[key])
        return text[:SERVER_TEXT_CHARS]

    def _query(self, statements: str, *, what: str) -> dict[int, list[_ResultSeries]]:
        """Run InfluxQL ``statements``; the series of each statement by statement id."""
        self._ensure_database()
        return self._query_unchecked(statements, what=what)

    def _query_unchecked(self, statements: str, *, what: str) -> dict[int, list[_ResultSeries]]:
        response = self._request(
            "/query",
            what=what,
            params={
                "db": self.database,
                "q": statements,
                "epoch": "ms",
                "chunked": "true",
                "chunk_size": str(QUERY_CHUNK_ROWS),
            },
        )
        if response.status != HTTP_OK:
            raise StorageError(
                f"InfluxDB at {self.url} refused {what} (HTTP {response.status}): "
                f"{self._server_error(response)}"
            )
        results: dict[int, dict[tuple[str, str], _ResultSeries]] = {}
        for answer in _json_documents(response.data.decode("utf-8")):
            if "error" in answer:
                raise StorageError(f"InfluxDB at {self.url}, {what}: {answer['error']}")
            for result in answer.get("results", []):
                if "error" in result:
                    raise StorageError(f"InfluxDB at {self.url}, {what}: {result['error']}")
                statement = results.setdefault(int(result.get("statement_id", 0)), {})
                for series in result.get("series", []):
                    tags = series.get("tags") or {}
                    key = (series.get("name", ""), json.dumps(tags, sort_keys=True))
                    if key in statement:
                        statement[key].values.extend(series.get("values", []))
                    else:
                        statement[key] = _ResultSeries(
                            name=series.get("name", ""),
                            tags=tags,
                            columns=series.get("columns", []),
                            values=list(series.get("values", [])),
                        )
        return {sid: list(series.values()) for sid, series in results.items()}

    def _ensure_database(self) -> None:
        if self._database_ready.is_set():
            return
        with self._database_lock:
            if self._database_ready.is_set():
                return
            statement = f"CREATE DATABASE {influxql_identifier(self.database)}"
            try:
                self._query_unchecked(statement, what="CREATE DATABASE")
            except _UnreachableError:
                raise  # try again with the next request
            except StorageError as error:
                logger.warning(
                    "InfluxDB at %s: %s; assuming database %r exists (InfluxDB 2.x/3.x or a "
                    "non-admin user)",
                    self.url,
                    error,
                    self.database,
                )
            self._database_ready.set()

    def ping(self) -> None:
        """Check that the server answers ``/ping``; :class:`StorageError` otherwise."""
        try:
            response = self._http.request("GET", f"{self.url}/ping", headers=self._headers)
        except urllib3.exceptions.HTTPError as error:
            raise StorageError(f"InfluxDB at {self.url} unreachable (ping): {error}") from error
        if response.status != HTTP_NO_CONTENT:
            raise StorageError(
                f"InfluxDB at {self.url} answered ping with HTTP {response.status}: "
                f"{self._server_error(response)}"
            )

    # -- TelemetryStore --------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Store a batch; returns once InfluxDB acknowledged every point.

        Raises
        ------
        ValueError, TypeError
            A record is not finite or not a telemetry record; nothing was sent.
        StorageError
            The server is unreachable, timed out or refused (its error text is in the message).
            Requests carry :data:`MAX_POINTS_PER_REQUEST` points, so part of the batch may be
            stored; retrying the whole batch is safe (same points overwrite).
        """
        lines = [line_protocol(record) for record in records]
        if not lines:
            return
        self._ensure_database()
        for first in range(0, len(lines), MAX_POINTS_PER_REQUEST):
            chunk = lines[first : first + MAX_POINTS_PER_REQUEST]
            response = self._request(
                "/write",
                what=f"write of {len(chunk)} points",
                params={"db": self.database, "precision": "ms"},
                body="\n".join(chunk).encode("utf-8"),
            )
            if response.status != HTTP_NO_CONTENT:
                raise StorageError(
                    f"InfluxDB at {self.url} refused a write of {len(chunk)} points "
                    f"(HTTP {response.status}): {self._server_error(response)}"
                )

    def query(
        self,
        *,
        site_id: str,
        device_id: str,
        field: str,
        start_s: float,
        end_s: float,
        every_s: float | None = None,
        aggregate: Aggregate = Aggregate.MEAN,
    ) -> Series:
        """Readings of ``field`` of a device in ``[start_s, end_s)`` [s], optionally downsampled.

        Buckets use ``GROUP BY time(every, offset)`` with ``offset = start mod every``, so they
        start at ``start_s`` exactly as in the SQLite backend, and ``fill(none)`` keeps only
        buckets holding data.
        """
        resolved = resolve_query(
            field=field, start_s=start_s, end_s=end_s, every_s=every_s, aggregate=aggregate
        )
        column = influxql_identifier(field)
        where = (
            f"FROM {influxql_identifier(resolved.kind.value)}"
            f" WHERE {influxql_identifier('site_id')} = {influxql_string(site_id)}"
            f" AND {influxql_identifier('device_id')} = {influxql_string(device_id)}"
            f" AND time >= {resolved.start_ms}ms AND time < {resolved.end_ms}ms"
        )
        if resolved.every_ms is None:
            statement = f"SELECT {column} {where}"
        else:
            statement = (
                f"SELECT {resolved.aggregate.value}({column}), count({column}) {where}"
                f" GROUP BY time({resolved.every_ms}ms, {resolved.offset_ms}ms) fill(none)"
            )
        rows = [
            row
            for series in self._query(statement, what=f"query of {field!r}").get(0, [])
            for row in series.values
            if row[1] is not None and (resolved.every_ms is None or row[2])
        ]
        rows.sort(key=lambda row: int(row[0]))
        times_ms = np.array([int(row[0]) for row in rows], dtype=np.int64)
        values = np.array([float(row[1]) for row in rows], dtype=np.float64)
        if resolved.every_ms is None:
            counts = np.ones(len(rows), dtype=np.int64)
        else:
            counts = np.array([int(row[2]) for row in rows], dtype=np.int64)
        return Series(
            device_id=device_id,
            field=field,
            time_s=times_ms / MILLISECONDS_PER_SECOND,
            value=values,
            count=counts,
        )

    def _site_condition(self, site_id: str, device_id: str | None = None) -> str:
        condition = f"{influxql_identifier('site_id')} = {influxql_string(site_id)}"
        if device_id is not None:
            condition += f" AND {influxql_identifier('device_id')} = {influxql_string(device_id)}"
        return condition

    def count(self, *, site_id: str, device_id: str | None = None) -> int:
        """Number of stored records of all kinds of a site, or of one of its devices."""
        measurements = ", ".join(influxql_identifier(kind.value) for kind in RecordKind)
        statement = (
            f"SELECT count({influxql_identifier(_COUNTED_FIELD)}) FROM {measurements}"  # noqa: S608 - values quoted
            f" WHERE {self._site_condition(site_id, device_id)}"
        )
        return sum(
            int(row[1])
            for series in self._query(statement, what="count").get(0, [])
            for row in series.values
        )

    def latest_status(self, *, site_id: str) -> dict[str, DeviceState]:
        """The latest known state of every device of ``site_id`` that has stored records."""
        where = f"WHERE {self._site_condition(site_id)} GROUP BY {influxql_identifier('device_id')}"
        newest = "ORDER BY time DESC LIMIT 1"
        readings = ", ".join(influxql_identifier(kind.value) for kind in _READING_KINDS)
        statements = "; ".join(
            (
                f'SELECT "online", "{_COUNTED_FIELD}" FROM "device_status" {where} {newest}',  # noqa: S608 - values quoted
                f'SELECT "status", "fault_code" FROM "gas" {where} {newest}',  # noqa: S608 - values quoted
                f'SELECT "status" FROM "laser" {where} {newest}',  # noqa: S608 - values quoted
                f'SELECT last("{_COUNTED_FIELD}") FROM {readings} {where}',  # noqa: S608 - values quoted
            )
        )
        results = self._query(statements, what="latest status")
        online: dict[str, tuple[bool, float]] = {}
        for series in results.get(0, []):
            for _, is_online, received_time_s in series.values[:1]:
                online[series.tags["device_id"]] = (bool(is_online), float(received_time_s))
        reported: dict[str, tuple[int, DeviceStatus, str | None]] = {}
        for series in (*results.get(1, []), *results.get(2, [])):
            for row in series.values[:1]:
                device, time_ms = series.tags["device_id"], int(row[0])
                fault_code = row[2] if len(row) > len(("time", "status")) else None
                if device not in reported or reported[device][0] < time_ms:
                    reported[device] = (time_ms, DeviceStatus(row[1]), fault_code)
        last_reading_ms: dict[str, int] = {}
        for series in results.get(3, []):
            for row in series.values:
                device, time_ms = series.tags["device_id"], int(row[0])
                last_reading_ms[device] = max(time_ms, last_reading_ms.get(device, time_ms))
        return device_states(online=online, reported=reported, last_reading_ms=last_reading_ms)

    def status_changes(
        self, *, site_id: str, start_s: float, end_s: float, device_id: str | None = None
    ) -> tuple[DeviceStatusChange, ...]:
        """Online/offline changes with ``start_s <= received_time < end_s`` [s], oldest first."""
        start_ms, end_ms = resolve_range(start_s=start_s, end_s=end_s)
        statement = (
            f'SELECT "online", "{_COUNTED_FIELD}" FROM "device_status"'  # noqa: S608 - values quoted
            f" WHERE {self._site_condition(site_id, device_id)}"
            f" AND time >= {start_ms}ms AND time < {end_ms}ms"
            f" GROUP BY {influxql_identifier('device_id')}"
        )
        rows = sorted(
            (int(row[0]), series.tags["device_id"], bool(row[1]), float(row[2]))
            for series in self._query(statement, what="status changes").get(0, [])
            for row in series.values
        )
        return tuple(
            DeviceStatusChange(
                site_id=site_id, device_id=device, online=online, received_time_s=received_time_s
            )
            for _, device, online, received_time_s in rows
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.clear()

    def __enter__(self) -> InfluxDBStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _json_documents(text: str) -> Iterator[dict[str, Any]]:
    """The JSON objects of a (chunked, newline-separated) InfluxDB answer."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        try:
            document, position = decoder.raw_decode(text, position)
        except ValueError as error:
            raise StorageError(
                f"InfluxDB sent an answer that is not JSON: {text[:SERVER_TEXT_CHARS]!r}"
            ) from error
        if isinstance(document, dict):
            yield document
