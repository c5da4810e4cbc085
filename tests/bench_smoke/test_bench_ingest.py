"""Smoke test of the ingest throughput benchmark: a tiny run, its JSON and its counts.

No timing is asserted (benchmarks report ratios; tests never assert wall-clock times): only that
the result has its keys, that every published message was received by both subscribers and
stored by the ingest service, and that the derived figures are consistent with the runs.
"""

from __future__ import annotations

import importlib
import json
import math
import statistics
from pathlib import Path
from types import ModuleType

import pytest

from pipesentinel.hardware.testbed import MosquittoProcess

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 90  # three readings per detector of the 30-detector site
REPETITIONS = 2

TOP_LEVEL_KEYS = {
    "benchmark",
    "messages",
    "repetitions",
    "warmup_messages",
    "detectors",
    "publisher_rate_msg_per_s",
    "publisher_window_messages",
    "bare_rate_msg_per_s",
    "ingest_rate_msg_per_s",
    "ingest_receive_rate_msg_per_s",
    "bare_cpu_us_per_message",
    "ingest_cpu_us_per_message",
    "ratio",
    "cpu_ratio",
    "goal",
    "met",
    "runs",
    "ingest_settings",
    "ingest_mean_batch_messages",
    "recording",
    "method",
    "notes",
    "elapsed_s",
    "paho_mqtt",
    "python",
    "machine",
    "cpus",
}
RECORDING_KEYS = {
    "recorded_rate_msg_per_s",
    "recorded_cpu_us_per_message",
    "recording_ratio",
    "recorded_ratio",
}
RECORDING_RUN_KEYS = RECORDING_KEYS | {"recorded_messages", "recording_bytes"}
RUN_KEYS = {
    "order",
    "published",
    "bare_received",
    "ingest_received",
    "ingest_rejected",
    "ingest_stored",
    "ingest_batches",
    "ingest_mean_batch_messages",
    "publisher_rate_msg_per_s",
    "bare_rate_msg_per_s",
    "ingest_rate_msg_per_s",
    "ingest_receive_rate_msg_per_s",
    "ratio",
    "bare_cpu_us_per_message",
    "ingest_cpu_us_per_message",
    "cpu_ratio",
}


@pytest.fixture
def bench_ingest(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    # bench/ is not an installed package: import it from the checkout. The publisher process is
    # spawned and inherits sys.path, so it finds the module too.
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    return importlib.import_module("bench.ingest")


def test_gas_messages_are_valid_and_distinct(bench_ingest: ModuleType) -> None:
    detectors = bench_ingest.detector_ids()
    messages = bench_ingest.gas_messages("s1", detectors, 65, start_ms=1_700_000_000_000)
    assert len(detectors) == bench_ingest.DETECTORS
    assert len(messages) == 65
    identities = set()
    for topic, payload in messages:
        body = json.loads(payload)
        assert set(body) == {"ts", "seq", "ch4_ppm", "c3h8_ppm", "status"}
        identities.add((topic, body["ts"]))
    assert len(identities) == 65  # one (device, ms) per reading: none overwrites another
    # Round robin: message 30 is the second reading of the first detector (hand-worked).
    assert messages[30][0] == messages[0][0]
    assert json.loads(messages[30][1])["seq"] == 2


def test_run_reports_every_key_and_the_counts_add_up(
    bench_ingest: ModuleType, mosquitto: MosquittoProcess
) -> None:
    result = bench_ingest.run(MESSAGES, REPETITIONS, broker=mosquitto)
    json.dumps(result)  # serialisable as the runner writes it
    assert set(result) == TOP_LEVEL_KEYS
    assert (result["messages"], result["repetitions"]) == (MESSAGES, REPETITIONS)
    assert result["goal"] == 0.7
    # Mosquitto 2.0 announces a Receive Maximum of 20 (its max_inflight_messages default).
    assert result["publisher_window_messages"] == 20
    runs = result["runs"]
    assert len(runs) == REPETITIONS
    assert [run["order"] for run in runs] == ["bare, ingest", "ingest, bare"]
    for run in runs:
        assert set(run) == RUN_KEYS
        assert run["published"] == MESSAGES
        assert run["bare_received"] == MESSAGES
        assert run["ingest_received"] == MESSAGES
        assert run["ingest_rejected"] == 0
        assert run["ingest_stored"] == MESSAGES
        assert 1 <= run["ingest_batches"] <= MESSAGES
        assert math.isclose(run["ingest_mean_batch_messages"], MESSAGES / run["ingest_batches"])
        for key in RUN_KEYS - {"order", "ingest_rejected"}:
            assert math.isfinite(run[key])
            assert run[key] > 0
        assert math.isclose(run["ratio"], run["ingest_rate_msg_per_s"] / run["bare_rate_msg_per_s"])
    for key in ("ratio", "cpu_ratio", "bare_rate_msg_per_s", "ingest_rate_msg_per_s"):
        assert math.isclose(result[key], statistics.median(run[key] for run in runs))
    assert result["met"] is (result["ratio"] >= result["goal"])
    assert result["recording"] is False
    assert result["ingest_settings"]["batch_linger_s"] == 0.005


def test_run_with_recording_and_another_linger_records_every_message(
    bench_ingest: ModuleType, mosquitto: MosquittoProcess
) -> None:
    result = bench_ingest.run(MESSAGES, 1, broker=mosquitto, record=True, batch_linger_s=0.05)
    json.dumps(result)
    assert set(result) == TOP_LEVEL_KEYS | RECORDING_KEYS
    assert result["recording"] is True
    assert result["ingest_settings"]["batch_linger_s"] == 0.05
    (run,) = result["runs"]
    assert set(run) == RUN_KEYS | RECORDING_RUN_KEYS
    assert run["order"] == "bare, ingest, recorded"
    assert run["recorded_messages"] == MESSAGES  # read back from the recording, line by line
    assert run["recording_bytes"] > 0
    assert math.isclose(
        run["recording_ratio"], run["recorded_rate_msg_per_s"] / run["ingest_rate_msg_per_s"]
    )
    for key in RECORDING_KEYS:
        assert math.isclose(result[key], run[key])
