"""InfluxDB-specific behaviour against a real influxd 1.6: outages, server errors, auth, escaping.

The line-protocol tests need no server.
"""

from __future__ import annotations

import base64
import logging
import urllib.parse
import urllib.request
from collections.abc import Callable

import pytest
from numpy.testing import assert_array_equal

from pipesentinel.hardware.testbed import InfluxdProcess
from pipesentinel.ingest.records import (
    CameraChannel,
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    WindReading,
)
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.factory import open_telemetry_store
from pipesentinel.ingest.storage.influxdb import (
    InfluxDBStore,
    influxql_string,
    line_protocol,
)
from pipesentinel.settings import StorageSettings

T0 = 1_700_000_000.0
InfluxdFactory = Callable[..., InfluxdProcess]


def gas(device: str, time_s: float, site: str = "s", **changes: object) -> GasReading:
    values: dict[str, object] = {
        "site_id": site,
        "device_id": device,
        "time_s": time_s,
        "seq": 5,
        "methane_mole_fraction": 1e-6,
        "propane_mole_fraction": 0.0,
        "status": DeviceStatus.OK,
        "fault_code": None,
        "received_time_s": time_s + 0.25,
    }
    values.update(changes)
    return GasReading(**values)  # type: ignore[arg-type]


def raw_query(server: InfluxdProcess, statement: str, *, login: str | None = None) -> str:
    """Run InfluxQL with the standard library, as ``user:password`` when ``login`` is given."""
    body = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"{server.url}/query", data=body, method="POST")
    if login is not None:
        request.add_header("Authorization", f"Basic {base64.b64encode(login.encode()).decode()}")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer = str(response.read().decode())
    assert '"error"' not in answer, answer
    return answer


# -- line protocol (no server) ---------------------------------------------------------------


def test_line_protocol_of_each_record_kind() -> None:
    # Hand-written expectations of InfluxDB line protocol: measurement,tags fields time(ms),
    # tags and fields sorted by key, integers suffixed with i, strings quoted.
    reading = gas("G1", T0 + 0.123, status=DeviceStatus.FAULT, fault_code="E42")
    assert line_protocol(reading) == (
        'gas,device_id=G1,site_id=s fault_code="E42",methane_mole_fraction=1e-06,'
        'propane_mole_fraction=0,received_time_s=1700000000.373,seq=5i,status="fault" '
        "1700000000123"
    )
    wind = WindReading("s", "W1", T0, 7, 3.5, 1.5, 0.25, None, 101325.0, T0)
    assert line_protocol(wind) == (
        "wind,device_id=W1,site_id=s direction_from_rad=1.5,pressure_pa=101325,"
        "received_time_s=1700000000,seq=7i,sigma_theta_rad=0.25,speed_m_per_s=3.5 1700000000000"
    )
    frame = CameraFrame("s", "C1", CameraChannel.THERMAL, T0, 3, 640, 480, b"12345", T0 + 1)
    assert line_protocol(frame) == (
        "camera_frame,channel=thermal,device_id=C1,site_id=s height_px=480i,image_bytes=5i,"
        "received_time_s=1700000001,seq=3i,width_px=640i 1700000000000"
    )
    change = DeviceStatusChange("s", "C1", False, T0 + 2.5)
    assert line_protocol(change) == (
        "device_status,device_id=C1,site_id=s online=false,received_time_s=1700000002.5 "
        "1700000002500"
    )


def test_line_protocol_escapes_tags_with_influxdb_client() -> None:
    line = line_protocol(gas("G 1,x=y", T0, site="my site"))
    assert line.startswith(r"gas,device_id=G\ 1\,x\=y,site_id=my\ site ")


def test_influxql_strings_are_escaped() -> None:
    assert influxql_string("plain") == "'plain'"
    assert influxql_string("it's a \\ test") == "'it\\'s a \\\\ test'"


def test_an_empty_tag_is_refused_rather_than_dropped() -> None:
    with pytest.raises(ValueError, match="empty device_id"):
        line_protocol(gas("", T0))


def test_bad_construction_arguments_name_the_problem() -> None:
    with pytest.raises(ValueError, match="url"):
        InfluxDBStore(url="127.0.0.1:8086", database="x")
    with pytest.raises(ValueError, match="database"):
        InfluxDBStore(url="http://127.0.0.1:8086", database="")
    with pytest.raises(ValueError, match="timeout_s"):
        InfluxDBStore(url="http://127.0.0.1:8086", database="x", timeout_s=0)


# -- against a real influxd ---------------------------------------------------------------


@pytest.mark.services
def test_hostile_ids_round_trip(influx_storage_settings: StorageSettings) -> None:
    site, device = "site 'quoted', with=equals", "G\\1 'x'"
    with InfluxDBStore.from_settings(influx_storage_settings) as store:
        store.write([gas(device, T0, site=site), gas("G1", T0, site="site")])
        assert store.count(site_id=site) == 1
        assert store.count(site_id=site, device_id=device) == 1
        series = store.query(
            site_id=site, device_id=device, field="methane_mole_fraction", start_s=T0, end_s=T0 + 1
        )
        assert_array_equal(series.value, [1e-6])
        assert list(store.latest_status(site_id=site)) == [device]


@pytest.mark.services
def test_server_down_raises_then_the_same_batch_succeeds_after_restart(
    influxd_factory: InfluxdFactory,
) -> None:
    server = influxd_factory()
    store = InfluxDBStore(url=server.url, database="outage", timeout_s=2.0)
    try:
        store.write([gas("G1", T0)])
        server.stop()
        batch = [gas("G1", T0 + k) for k in range(1, 6)]
        with pytest.raises(StorageError, match=rf"InfluxDB at {server.url} unreachable"):
            store.write(batch)
        with pytest.raises(StorageError, match="unreachable"):
            store.count(site_id="s")
        server.start()  # same port, same data directory
        store.write(batch)  # the caller's retry
        assert store.count(site_id="s") == 6
    finally:
        store.close()


@pytest.mark.services
def test_database_is_created_on_first_use_even_if_the_server_starts_later(
    influxd_factory: InfluxdFactory,
) -> None:
    server = influxd_factory()
    server.stop()
    store = InfluxDBStore(url=server.url, database="late", timeout_s=2.0)
    try:
        with pytest.raises(StorageError, match="unreachable"):
            store.write([gas("G1", T0)])
        server.start()
        store.write([gas("G1", T0)])
        assert '"late"' in raw_query(server, "SHOW DATABASES")
    finally:
        store.close()


@pytest.mark.services
def test_a_hung_server_times_out(influxd_factory: InfluxdFactory) -> None:
    server = influxd_factory()
    store = InfluxDBStore(url=server.url, database="hang", timeout_s=0.5)
    try:
        store.write([gas("G1", T0)])
        server.freeze()
        try:
            with pytest.raises(StorageError, match=r"(?i)timed out"):
                store.write([gas("G1", T0 + 1)])
        finally:
            server.thaw()
        store.write([gas("G1", T0 + 1)])
        assert store.count(site_id="s") == 2
    finally:
        store.close()


@pytest.mark.services
def test_a_refused_write_carries_the_server_message(
    influxd: InfluxdProcess, influx_storage_settings: StorageSettings
) -> None:
    database = influx_storage_settings.influx_database
    with InfluxDBStore.from_settings(influx_storage_settings) as store:
        store.count(site_id="s")  # creates the database
        # Make methane a string field in this database: our float then conflicts (HTTP 400).
        # Types are fixed per shard (a week by default), so the point goes at T0 too.
        request = urllib.request.Request(
            f"{influxd.url}/write?db={database}&precision=ms",
            data=b'gas,site_id=s,device_id=G0 methane_mole_fraction="high" 1700000000000',
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass
        with pytest.raises(StorageError, match=r"HTTP 400.*field type conflict"):
            store.write([gas("G1", T0)])


@pytest.mark.services
def test_basic_auth(influxd_factory: InfluxdFactory) -> None:
    server = influxd_factory(auth_enabled=True, admin_username="root", admin_password="pw-1")
    with InfluxDBStore(
        url=server.url, database="secured", username="root", password="pw-1"
    ) as store:
        store.write([gas("G1", T0)])
        assert store.count(site_id="s") == 1
    with (
        InfluxDBStore(url=server.url, database="secured", username="root", password="no") as bad,
        pytest.raises(StorageError, match=r"HTTP 401.*authorization failed"),
    ):
        bad.write([gas("G1", T0)])
    with (
        InfluxDBStore(url=server.url, database="secured") as anonymous,
        pytest.raises(StorageError, match="HTTP 401"),
    ):
        anonymous.count(site_id="s")


@pytest.mark.services
def test_a_user_who_may_not_create_databases_still_writes(
    influxd_factory: InfluxdFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Like InfluxDB 2.x/3.x v1 compatibility: CREATE DATABASE is refused, the database exists.
    server = influxd_factory(auth_enabled=True, admin_username="root", admin_password="pw-1")
    raw_query(server, 'CREATE DATABASE "shared"', login="root:pw-1")
    raw_query(server, "CREATE USER \"writer\" WITH PASSWORD 'pw-2'", login="root:pw-1")
    raw_query(server, 'GRANT ALL ON "shared" TO "writer"', login="root:pw-1")
    with (
        caplog.at_level(logging.WARNING),
        InfluxDBStore(
            url=server.url, database="shared", username="writer", password="pw-2"
        ) as store,
    ):
        store.write([gas("G1", T0)])
        assert store.count(site_id="s") == 1
    assert "assuming database 'shared' exists" in caplog.text


@pytest.mark.services
def test_ping_and_the_factory(influx_storage_settings: StorageSettings) -> None:
    store = open_telemetry_store(influx_storage_settings)
    try:
        assert isinstance(store, InfluxDBStore)
        store.ping()
        assert store.timeout_s == influx_storage_settings.influx_timeout_s
    finally:
        store.close()
    # Port 9 (discard) on loopback: nothing listens there.
    with (
        InfluxDBStore(url="http://127.0.0.1:9", database="x", timeout_s=1) as nowhere,
        pytest.raises(StorageError, match="unreachable"),
    ):
        nowhere.ping()
