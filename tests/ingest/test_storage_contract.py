"""The TelemetryStore contract, run against both backends (SQLite and a real influxd 1.6).

Expected values are hand-worked from the readings written in each test (comments show the
arithmetic); the property test and the cross-backend test check both backends against a numpy
reference of the documented bucket convention, floor((t - start) / every).
"""

from __future__ import annotations

import dataclasses
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from pipesentinel.ingest.records import (
    CameraChannel,
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
from pipesentinel.ingest.storage.base import Aggregate, TelemetryStore
from pipesentinel.ingest.storage.influxdb import InfluxDBStore
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.settings import StorageSettings

# 1_700_000_003 mod 5 = 3: buckets of 5 s from T0 are NOT aligned to epoch multiples of 5 s.
T0 = 1_700_000_003.0
PPM = 1e-6  # one part per million as a mole fraction


def gas(site: str, device: str, time_s: float, methane: float, **changes: object) -> GasReading:
    values: dict[str, object] = {
        "site_id": site,
        "device_id": device,
        "time_s": time_s,
        "seq": round(time_s * 1000) % 1_000_000,
        "methane_mole_fraction": methane,
        "propane_mole_fraction": 0.0,
        "status": DeviceStatus.OK,
        "fault_code": None,
        "received_time_s": time_s + 0.25,
    }
    values.update(changes)
    return GasReading(**values)  # type: ignore[arg-type]


def wind(site: str, device: str, time_s: float, temperature_k: float | None) -> WindReading:
    return WindReading(
        site_id=site,
        device_id=device,
        time_s=time_s,
        seq=1,
        speed_m_per_s=3.5,
        direction_from_rad=math.pi / 2,
        sigma_theta_rad=0.2,
        temperature_k=temperature_k,
        pressure_pa=None,
        received_time_s=time_s + 0.1,
    )


def laser(site: str, device: str, time_s: float, path_integral: float) -> LaserReading:
    return LaserReading(
        site_id=site,
        device_id=device,
        time_s=time_s,
        seq=1,
        path_integral_mole_fraction_m=path_integral,
        status=DeviceStatus.OK,
        received_time_s=time_s + 0.1,
    )


def frame(site: str, device: str, time_s: float) -> CameraFrame:
    return CameraFrame(
        site_id=site,
        device_id=device,
        channel=CameraChannel.VISIBLE,
        time_s=time_s,
        seq=1,
        width_px=4,
        height_px=3,
        image=b"\xff\xd8 not really a jpeg",
        received_time_s=time_s + 0.1,
    )


def status(site: str, device: str, time_s: float, *, online: bool) -> DeviceStatusChange:
    return DeviceStatusChange(site_id=site, device_id=device, online=online, received_time_s=time_s)


def _open(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> TelemetryStore:
    if kind == "sqlite":
        return SQLiteStore(tmp_path / "telemetry.sqlite3")
    settings: StorageSettings = request.getfixturevalue("influx_storage_settings")
    return InfluxDBStore.from_settings(settings)


BACKENDS = ["sqlite", pytest.param("influxdb", marks=pytest.mark.services)]


@pytest.fixture(params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, unique_site_id: str
) -> Iterator[TelemetryStore]:
    opened = _open(str(request.param), tmp_path, request)
    yield opened
    opened.close()


def ten_gas_readings(site: str, device: str = "G1") -> list[GasReading]:
    """Readings at T0 + k s with methane (k + 1) ppm, k = 0..9, written out of order."""
    readings = [gas(site, device, T0 + k, (k + 1) * PPM) for k in range(10)]
    return readings[5:] + readings[:5][::-1]


def test_mixed_batch_is_counted_per_site_and_device(
    store: TelemetryStore, unique_site_id: str
) -> None:
    site = unique_site_id
    batch: list[Record] = [
        *ten_gas_readings(site),
        wind(site, "W1", T0, 290.0),
        wind(site, "W1", T0 + 60, None),
        laser(site, "C1", T0, 50 * PPM),
        frame(site, "C1", T0),
        status(site, "G1", T0 - 1, online=True),
        gas(f"{site}x", "G1", T0, 1 * PPM),  # another site
    ]
    store.write(batch)
    assert store.count(site_id=site) == 10 + 2 + 1 + 1 + 1
    assert store.count(site_id=site, device_id="G1") == 10 + 1
    assert store.count(site_id=site, device_id="C1") == 2
    assert store.count(site_id=f"{site}x") == 1
    assert store.count(site_id=site, device_id="nobody") == 0


def test_raw_query_is_half_open_ordered_and_filtered(
    store: TelemetryStore, unique_site_id: str
) -> None:
    site = unique_site_id
    store.write([*ten_gas_readings(site), *ten_gas_readings(site, "G2"), gas("other", "G1", T0, 1)])
    series = store.query(
        site_id=site, device_id="G1", field="methane_mole_fraction", start_s=T0 + 2, end_s=T0 + 5
    )
    # k = 2, 3, 4 (T0 + 5 excluded): methane 3, 4, 5 ppm.
    assert series.device_id == "G1"
    assert series.field == "methane_mole_fraction"
    assert_array_equal(series.time_s, [T0 + 2, T0 + 3, T0 + 4])
    assert_allclose(series.value, [3 * PPM, 4 * PPM, 5 * PPM], rtol=1e-15)
    assert_array_equal(series.count, [1, 1, 1])
    assert series.time_s.dtype == np.float64
    assert series.count.dtype == np.int64


# Buckets of 5 s from T0 + 1 (= 1_700_000_004 s, not a multiple of 5): [T0+1, T0+6) holds k = 1..5
# (2..6 ppm), [T0+6, T0+11) k = 6..9 (7..10 ppm). Hand-worked: mean (2+3+4+5+6)/5 = 4 and
# (7+8+9+10)/4 = 8.5; last = the newest reading of each bucket although the readings were written
# out of order.
@pytest.mark.parametrize(
    ("aggregate", "expected_ppm"),
    [
        (Aggregate.MEAN, [4.0, 8.5]),
        (Aggregate.MIN, [2.0, 7.0]),
        (Aggregate.MAX, [6.0, 10.0]),
        (Aggregate.LAST, [6.0, 10.0]),
    ],
)
def test_downsampling_buckets_start_at_start(
    store: TelemetryStore, unique_site_id: str, aggregate: Aggregate, expected_ppm: list[float]
) -> None:
    store.write(ten_gas_readings(unique_site_id))
    series = store.query(
        site_id=unique_site_id,
        device_id="G1",
        field="methane_mole_fraction",
        start_s=T0 + 1,
        end_s=T0 + 100,
        every_s=5.0,
        aggregate=aggregate,
    )
    assert_array_equal(series.time_s, [T0 + 1, T0 + 6])
    assert_allclose(series.value, np.array(expected_ppm) * PPM, rtol=1e-12)
    assert_array_equal(series.count, [5, 4])


def test_downsampling_skips_empty_buckets_and_takes_aggregate_names(
    store: TelemetryStore, unique_site_id: str
) -> None:
    site = unique_site_id
    store.write([gas(site, "G1", T0, 1 * PPM), gas(site, "G1", T0 + 30.5, 2 * PPM)])
    series = store.query(
        site_id=site,
        device_id="G1",
        field="methane_mole_fraction",
        start_s=T0,
        end_s=T0 + 60,
        every_s=10,
        aggregate="max",  # type: ignore[arg-type]  # the enum's value is accepted too
    )
    # Buckets [T0, T0+10) and [T0+30, T0+40) hold data; the two between are not returned.
    assert_array_equal(series.time_s, [T0, T0 + 30])
    assert_allclose(series.value, [1 * PPM, 2 * PPM], rtol=1e-15)
    assert_array_equal(series.count, [1, 1])


def test_empty_results(store: TelemetryStore, unique_site_id: str) -> None:
    store.write(ten_gas_readings(unique_site_id))
    for every_s in (None, 5.0):
        for device, start_s in (("G1", T0 + 1000), ("nobody", T0)):
            series = store.query(
                site_id=unique_site_id,
                device_id=device,
                field="methane_mole_fraction",
                start_s=start_s,
                end_s=start_s + 100,
                every_s=every_s,
            )
            assert series.time_s.shape == series.value.shape == series.count.shape == (0,)
    same_instant = store.query(
        site_id=unique_site_id,
        device_id="G1",
        field="methane_mole_fraction",
        start_s=T0,
        end_s=T0,
    )
    assert len(same_instant.value) == 0


def test_empty_store_answers(store: TelemetryStore, unique_site_id: str) -> None:
    assert store.count(site_id=unique_site_id) == 0
    assert store.latest_status(site_id=unique_site_id) == {}
    assert store.status_changes(site_id=unique_site_id, start_s=0, end_s=T0) == ()
    series = store.query(
        site_id=unique_site_id, device_id="G1", field="speed_m_per_s", start_s=0, end_s=T0
    )
    assert len(series.value) == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"field": "methane_ppm"}, "unknown field 'methane_ppm'"),
        ({"aggregate": "median"}, "unknown aggregate 'median'"),
        ({"every_s": 0.0}, "every_s"),
        ({"every_s": -5.0}, "every_s"),
        ({"every_s": math.nan}, "every_s"),
        ({"end_s": T0 - 1}, "before start_s"),
        ({"start_s": math.inf}, "start_s must be finite"),
    ],
)
def test_bad_queries_raise_value_error_naming_the_problem(
    store: TelemetryStore, arguments: dict[str, object], message: str
) -> None:
    query: dict[str, object] = {
        "site_id": "s",
        "device_id": "G1",
        "field": "methane_mole_fraction",
        "start_s": T0,
        "end_s": T0 + 10,
    }
    query.update(arguments)
    with pytest.raises(ValueError, match=message):
        store.query(**query)  # type: ignore[arg-type]


def test_missing_values_are_not_stored_as_zero(store: TelemetryStore, unique_site_id: str) -> None:
    site = unique_site_id
    # Temperatures at T0, T0+1, T0+3; none at T0+2 and T0+4 (station without a thermometer then).
    temperatures = [290.0, 292.0, None, 294.0, None]
    store.write([wind(site, "W1", T0 + k, t) for k, t in enumerate(temperatures)])
    raw = store.query(
        site_id=site, device_id="W1", field="temperature_k", start_s=T0, end_s=T0 + 10
    )
    assert_array_equal(raw.time_s, [T0, T0 + 1, T0 + 3])
    assert_array_equal(raw.value, [290.0, 292.0, 294.0])
    mean = store.query(
        site_id=site,
        device_id="W1",
        field="temperature_k",
        start_s=T0,
        end_s=T0 + 10,
        every_s=10,
    )
    # (290 + 292 + 294) / 3 = 292 over 3 readings; a zero stored for a gap would give 175.2 / 5.
    assert_allclose(mean.value, [292.0], rtol=1e-15)
    assert_array_equal(mean.count, [3])
    assert len(raw.time_s) == 3
    pressure = store.query(
        site_id=site, device_id="W1", field="pressure_pa", start_s=T0, end_s=T0 + 10, every_s=5
    )
    assert len(pressure.value) == 0
    speed = store.query(
        site_id=site, device_id="W1", field="speed_m_per_s", start_s=T0, end_s=T0 + 10
    )
    assert_array_equal(speed.value, [3.5] * 5)


def test_writing_the_same_batch_twice_stores_it_once(
    store: TelemetryStore, unique_site_id: str
) -> None:
    batch: list[Record] = [
        *ten_gas_readings(unique_site_id),
        status(unique_site_id, "G1", T0, online=False),
    ]
    store.write(batch)
    store.write(batch)  # a retry after an uncertain failure
    assert store.count(site_id=unique_site_id) == 11


def test_values_and_times_round_trip_exactly(store: TelemetryStore, unique_site_id: str) -> None:
    # Awkward floats and millisecond times: nothing may be rounded on the way.
    values = [1.0 / 3.0, 2.0**-40, 123456.789e-9, 5e-324, 0.0, -0.1]
    times = [T0 + 0.001, T0 + 0.123, T0 + 1.999, T0 + 2.5, T0 + 3.0, T0 + 3.007]
    store.write([laser(unique_site_id, "C1", t, v) for t, v in zip(times, values, strict=True)])
    series = store.query(
        site_id=unique_site_id,
        device_id="C1",
        field="path_integral_mole_fraction_m",
        start_s=T0,
        end_s=T0 + 4,
    )
    assert series.time_s.tolist() == times
    assert series.value.tolist() == values


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"methane_mole_fraction": math.nan}, r"G2.*methane_mole_fraction.*not finite"),
        ({"propane_mole_fraction": math.inf}, r"G2.*propane_mole_fraction.*not finite"),
        ({"time_s": math.inf}, r"G2.*time_s inf is not a time"),
        ({"time_s": 1e12}, r"G2.*time_s .* is not a time between"),  # year 33658
        ({"received_time_s": -1e10}, r"G2.*received_time_s"),  # before 1677
        ({"seq": 2**63}, r"G2.*seq .* out of range"),
    ],
)
def test_unstorable_records_are_refused_and_nothing_is_written(
    store: TelemetryStore, unique_site_id: str, changes: dict[str, Any], message: str
) -> None:
    good = gas(unique_site_id, "G1", T0, 1 * PPM)
    bad = dataclasses.replace(gas(unique_site_id, "G2", T0, 1 * PPM), **changes)
    with pytest.raises(ValueError, match=message):
        store.write([good, bad])
    assert store.count(site_id=unique_site_id) == 0
    store.write([good])  # the store is still usable
    assert store.count(site_id=unique_site_id) == 1


def test_latest_status_and_status_changes(store: TelemetryStore, unique_site_id: str) -> None:
    site = unique_site_id
    store.write(
        [
            status(site, "G1", T0, online=True),
            status(site, "G1", T0 + 50, online=False),
            status(site, "C1", T0 + 10, online=True),
            gas(site, "G1", T0 + 20, 1 * PPM),
            gas(site, "G1", T0 + 30, 0.0, status=DeviceStatus.FAULT, fault_code="E42"),
            gas(site, "G2", T0 + 5, 2 * PPM, status=DeviceStatus.WARMUP),
            laser(site, "C1", T0 + 12, 3 * PPM),
            frame(site, "C1", T0 + 40),
            wind(site, "W1", T0 + 7, None),
        ]
    )
    states = store.latest_status(site_id=site)
    assert sorted(states) == ["C1", "G1", "G2", "W1"]
    g1 = states["G1"]
    assert (g1.online, g1.online_changed_time_s) == (False, T0 + 50)
    assert (g1.status, g1.fault_code, g1.status_time_s) == (DeviceStatus.FAULT, "E42", T0 + 30)
    assert g1.last_reading_time_s == T0 + 30
    c1 = states["C1"]
    assert (c1.online, c1.status, c1.fault_code) == (True, DeviceStatus.OK, None)
    assert c1.last_reading_time_s == T0 + 40  # the frame is newer than the laser reading
    assert (states["G2"].online, states["G2"].status) == (None, DeviceStatus.WARMUP)
    w1 = states["W1"]
    assert (w1.online, w1.status, w1.last_reading_time_s) == (None, None, T0 + 7)

    changes = store.status_changes(site_id=site, start_s=T0, end_s=T0 + 50)
    assert changes == (
        status(site, "G1", T0, online=True),
        status(site, "C1", T0 + 10, online=True),
    )
    only_g1 = store.status_changes(site_id=site, device_id="G1", start_s=T0, end_s=T0 + 60)
    assert [change.online for change in only_g1] == [True, False]


LARGE_BATCH_READINGS = 50_000


def test_large_batch_round_trip(store: TelemetryStore, unique_site_id: str) -> None:
    count = LARGE_BATCH_READINGS
    values = np.linspace(0.0, 1e-3, count)
    times = T0 + np.arange(count) * 0.1  # 10 Hz for 5000 s
    store.write(
        [
            gas(unique_site_id, "G1", float(t), float(v))
            for t, v in zip(times.tolist(), values.tolist(), strict=True)
        ]
    )
    assert store.count(site_id=unique_site_id) == count
    series = store.query(
        site_id=unique_site_id,
        device_id="G1",
        field="methane_mole_fraction",
        start_s=T0,
        end_s=T0 + 10_000,
    )
    assert len(series.value) == count
    assert_array_equal(series.value, values)
    assert_allclose(series.time_s, times, rtol=0, atol=0.5e-3)
    hourly = store.query(
        site_id=unique_site_id,
        device_id="G1",
        field="methane_mole_fraction",
        start_s=T0,
        end_s=T0 + 10_000,
        every_s=1000,
        aggregate=Aggregate.MAX,
    )
    assert_array_equal(hourly.count, [10_000] * 5)
    assert_array_equal(hourly.value, values[9_999::10_000])


# -- both backends against a numpy reference of the bucket convention ---------------------


def reference(
    times_ms: np.ndarray, values: np.ndarray, start_ms: int, every_ms: int, aggregate: Aggregate
) -> tuple[list[int], list[float], list[int]]:
    """floor((t - start) / every) buckets reduced in numpy; (bucket start ms, value, count)."""
    buckets = (times_ms - start_ms) // every_ms
    starts, values_out, counts = [], [], []
    for bucket in np.unique(buckets):
        inside = buckets == bucket
        chosen = values[inside]
        if aggregate is Aggregate.MEAN:
            reduced = float(np.mean(chosen))
        elif aggregate is Aggregate.MIN:
            reduced = float(np.min(chosen))
        elif aggregate is Aggregate.MAX:
            reduced = float(np.max(chosen))
        else:
            reduced = float(chosen[np.argmax(times_ms[inside])])
        starts.append(int(start_ms + bucket * every_ms))
        values_out.append(reduced)
        counts.append(int(inside.sum()))
    return starts, values_out, counts


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    offsets_ms=st.lists(st.integers(0, 120_000), min_size=1, max_size=40, unique=True),
    values=st.lists(
        st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=40, max_size=40
    ),
    start_offset_ms=st.integers(-5_000, 60_000),
    every_ms=st.integers(1, 50_000),
    aggregate=st.sampled_from(list(Aggregate)),
)
def test_downsampling_matches_the_reference(
    store: TelemetryStore,
    unique_site_id: str,
    *,
    offsets_ms: list[int],
    values: list[float],
    start_offset_ms: int,
    every_ms: int,
    aggregate: Aggregate,
) -> None:
    device = uuid.uuid4().hex[:8]  # hypothesis reuses the store: one device per example
    base_ms = round(T0 * 1000)
    times_ms = base_ms + np.array(offsets_ms, dtype=np.int64)
    chosen = np.array(values[: len(offsets_ms)])
    store.write(
        [
            gas(unique_site_id, device, int(t) / 1000, float(v))
            for t, v in zip(times_ms, chosen, strict=True)
        ]
    )
    start_ms = base_ms + start_offset_ms
    end_ms = base_ms + 100_000
    inside = (times_ms >= start_ms) & (times_ms < end_ms)
    expected = reference(times_ms[inside], chosen[inside], start_ms, every_ms, aggregate)
    series = store.query(
        site_id=unique_site_id,
        device_id=device,
        field="methane_mole_fraction",
        start_s=start_ms / 1000,
        end_s=end_ms / 1000,
        every_s=every_ms / 1000,
        aggregate=aggregate,
    )
    assert [round(t * 1000) for t in series.time_s] == expected[0]
    assert_allclose(series.value, expected[1], rtol=1e-12, atol=1e-12)
    assert series.count.tolist() == expected[2]


@pytest.mark.services
def test_both_backends_give_the_same_answers(
    tmp_path: Path, influx_storage_settings: StorageSettings, unique_site_id: str
) -> None:
    rng = np.random.default_rng(20240501)
    times_s = T0 + np.sort(rng.choice(3_600_000, size=2_000, replace=False)) / 1000
    values = rng.lognormal(mean=-12, sigma=1, size=times_s.size)
    temperatures = np.where(
        rng.random(times_s.size) < 0.3, np.nan, 280 + 20 * rng.random(times_s.size)
    )
    batch: list[Record] = []
    for t, v, temperature in zip(
        times_s.tolist(), values.tolist(), temperatures.tolist(), strict=True
    ):
        batch.append(gas(unique_site_id, "G1", t, v))
        batch.append(
            wind(unique_site_id, "W1", t, None if math.isnan(temperature) else temperature)
        )
    with (
        SQLiteStore(tmp_path / "telemetry.sqlite3") as sqlite_store,
        InfluxDBStore.from_settings(influx_storage_settings) as influx_store,
    ):
        sqlite_store.write(batch)
        influx_store.write(batch)
        assert (
            sqlite_store.count(site_id=unique_site_id)
            == influx_store.count(site_id=unique_site_id)
            == len(batch)
        )
        for device, field in (("G1", "methane_mole_fraction"), ("W1", "temperature_k")):
            for every_s in (None, 0.25, 7.0, 60.0, 900.0):
                for aggregate in Aggregate:
                    arguments = {
                        "site_id": unique_site_id,
                        "device_id": device,
                        "field": field,
                        "start_s": T0 + 1.234,
                        "end_s": T0 + 3000.5,
                        "every_s": every_s,
                        "aggregate": aggregate,
                    }
                    a = sqlite_store.query(**arguments)  # type: ignore[arg-type]
                    b = influx_store.query(**arguments)  # type: ignore[arg-type]
                    assert_array_equal(a.time_s, b.time_s)
                    assert_array_equal(a.count, b.count)
                    assert_allclose(a.value, b.value, rtol=1e-12)
                    assert len(a.value) > 0
