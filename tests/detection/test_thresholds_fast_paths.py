"""The threshold core's fast paths against its general path (``fast_paths=False``).

The fast paths (the quiet batch that skips the alarm stage, the layouts of batches in time order,
slices instead of gathers when a batch covers every detector) must give the transitions and the
whole state of the general path, and of the per-reading reference, exactly: hypothesis streams
with readings at and around the set points and clear levels, on/off delays met to the second,
faults, refused readings. The quiet test itself is pinned by hand-worked cases.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_array_equal
from numpy.typing import NDArray

from pipesentinel.alarm_config import GasSetpoints
from pipesentinel.detection.gases import LelBasis, lower_explosive_limit
from pipesentinel.detection.thresholds import (
    GASES,
    EvaluationResult,
    GasAlarmEvaluator,
    SequentialGasAlarmEvaluator,
    SetpointTable,
)
from pipesentinel.site import Gas

BASIS = LelBasis.IEC_60079_20_1
LEL = np.array([lower_explosive_limit(gas, basis=BASIS) for gas in GASES])  # IEC 60079-20-1
FULL_SCALE = 0.05  # 50000 ppm, the reference site's detectors
PERIOD_S = 2.0
Batch = tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]
Scenario = tuple[SetpointTable, int | None, list[Batch]]


def table_of(count: int, setpoints: GasSetpoints | None = None) -> SetpointTable:
    return SetpointTable.from_setpoints(
        [f"D{index}" for index in range(count)],
        setpoints or GasSetpoints(),
        full_scale_mole_fraction=FULL_SCALE,
        sample_period_s=PERIOD_S,
        basis=BASIS,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    count = draw(st.integers(1, 5))
    low = draw(st.sampled_from([0.1, 0.2]))
    deadband = draw(st.sampled_from([0.0, 0.02]))
    setpoints = GasSetpoints(
        low_fraction_lel=low,
        high_fraction_lel=low * 2,
        deadband_fraction_lel=deadband,
        on_delay_s=draw(st.sampled_from([0.0, 1.0, 2.0, 4.0])),
        off_delay_s=draw(st.sampled_from([0.0, 2.0, 10.0])),
        rate_of_rise_fraction_lel_per_s=draw(st.sampled_from([0.001, 0.01])),
        rate_of_rise_deadband_fraction_lel_per_s=0.0005,
        rate_of_rise_window_s=draw(st.sampled_from([4.0, 8.0, 60.0])),
    )
    propane = replace(
        setpoints,
        rate_of_rise_window_s=draw(
            st.sampled_from([setpoints.rate_of_rise_window_s, 4.0, 8.0, 60.0])
        ),
    )
    monitored = draw(
        st.lists(
            st.sampled_from([[True, True]] * 3 + [[True, False], [False, True]]),
            min_size=count,
            max_size=count,
        )
    )
    table = SetpointTable.from_setpoints(
        [f"D{index}" for index in range(count)],
        [{Gas.METHANE: setpoints, Gas.PROPANE: propane}] * count,
        full_scale_mole_fraction=FULL_SCALE,
        sample_period_s=PERIOD_S,
        basis=BASIS,
        monitored=monitored,
    )
    capacity = draw(st.one_of(st.none(), st.integers(1, 8)))
    # Fractions of the LEL: quiet ones (noise, under-range) and ones at the decisions (the
    # clear levels and set points of LOW and HIGH, just below them).
    quiet = [-0.02, 0.0, 0.01, 0.05]
    loud = [
        *quiet,
        low - deadband,
        low - deadband - 0.005,
        low,
        2 * low - deadband,
        2 * low,
        0.9,
    ]
    clock = [0.0] * count
    batches: list[Batch] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["one", "round", "rounds", "subset", "random"]))
        if kind == "one":  # a single reading (the live service's smallest batch)
            detectors = [draw(st.integers(0, count - 1))]
        elif kind == "round":  # every detector once, in table order
            detectors = list(range(count))
        elif kind == "rounds":  # round-robin: every detector the same number of times
            detectors = list(range(count)) * draw(st.integers(1, 4))
        elif kind == "subset":  # some detectors once each, in any order
            detectors = draw(st.permutations(range(count)))[: draw(st.integers(1, count))]
        else:
            size = draw(st.integers(0, 20))
            detectors = draw(st.lists(st.integers(0, count - 1), min_size=size, max_size=size))
        times = []
        for detector in detectors:
            clock[detector] += draw(st.sampled_from([2.0] * 6 + [0.5, 1.0, 3.0, 0.0, -1.0]))
            times.append(clock[detector])
        levels = st.sampled_from(loud if draw(st.booleans()) else quiet)
        fractions = draw(
            st.lists(st.tuples(levels, levels), min_size=len(detectors), max_size=len(detectors))
        )
        flag = st.sampled_from([(False, False)] * 8 + [(True, True), (True, False), (False, True)])
        flags = draw(st.lists(flag, min_size=len(detectors), max_size=len(detectors)))
        batches.append(
            (
                np.asarray(detectors, dtype=np.int64),
                np.asarray(times, dtype=np.float64),
                np.asarray(fractions, dtype=np.float64).reshape(-1, 2) * LEL,
                np.asarray(flags, dtype=np.bool_).reshape(-1, 2),
            )
        )
    return table, capacity, batches


def assert_same(first: EvaluationResult, second: EvaluationResult) -> None:
    assert_array_equal(first.out_of_order_index, second.out_of_order_index)
    one, two = first.transitions, second.transitions
    for name in (
        "reading_index",
        "detector_index",
        "gas_index",
        "alarm_type",
        "became_active",
        "time_s",
        "value_fraction_lel",
        "setpoint_fraction_lel",
    ):
        assert_array_equal(getattr(one, name), getattr(two, name), err_msg=name)


def assert_same_state(fast: GasAlarmEvaluator, general: GasAlarmEvaluator) -> None:
    """Every array of the state (rings, running sums, latches, run starts) is equal."""
    arrays = {name: value for name, value in vars(general).items() if isinstance(value, np.ndarray)}
    assert len(arrays) > 20  # the state really is compared
    for name, value in arrays.items():
        assert_array_equal(getattr(fast, name), value, err_msg=name)


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_fast_paths_equal_the_general_path_and_the_reference(scenario: Scenario) -> None:
    table, capacity, batches = scenario
    fast = GasAlarmEvaluator(table, capacity=capacity)
    general = GasAlarmEvaluator(table, capacity=capacity, fast_paths=False)
    reference = SequentialGasAlarmEvaluator(table, capacity=capacity)
    for detectors, times, amounts, flags in batches:
        quiet_before = fast.quiet_batches
        found = fast.evaluate(detectors, times, amounts, invalid=flags)
        if fast.quiet_batches > quiet_before:
            event("quiet batch")
        assert_same(found, general.evaluate(detectors, times, amounts, invalid=flags))
        assert_same(found, reference.evaluate(detectors, times, amounts, invalid=flags))
        assert_same_state(fast, general)
        assert_array_equal(fast.active, reference.active)
        assert_array_equal(fast.held_by_fault, reference.held_by_fault)
    assert general.quiet_batches == 0  # the general path never takes the shortcut
    now = max([0.0, *(float(batch[1].max()) for batch in batches if batch[1].size)])
    for one, two in zip(
        vars(fast.recent(now_s=now)).values(), vars(general.recent(now_s=now)).values(), strict=True
    ):
        assert_array_equal(one, two)


# ---- the quiet test, hand-worked


def noise(count: int, steps: int, start_s: float = 0.0) -> Batch:
    """Round-robin readings of ``count`` detectors at 1 %LEL methane, propane zero."""
    detectors = np.tile(np.arange(count, dtype=np.int64), steps)
    times = start_s + np.repeat(PERIOD_S * np.arange(steps), count) + 0.01 * detectors
    amounts = np.zeros((detectors.size, 2))
    amounts[:, 0] = 0.01 * LEL[0]
    return detectors, times, amounts, np.zeros((detectors.size, 2), dtype=np.bool_)


def test_a_quiet_stream_takes_the_quiet_path_every_batch() -> None:
    evaluator = GasAlarmEvaluator(table_of(3))
    detectors, times, amounts, _ = noise(3, 40)
    for start in range(0, detectors.size, 3):
        part = slice(start, start + 3)
        result = evaluator.evaluate(detectors[part], times[part], amounts[part])
        assert len(result.transitions) == 0
    assert evaluator.quiet_batches == 40


@pytest.mark.parametrize(
    ("fraction_lel", "quiet"),
    [
        (0.17, True),  # below the LOW clear level 0.18 (set point 0.20, deadband 0.02)
        (0.185, False),  # inside the deadband: at or above the lowest clear level
        (0.25, False),  # above the set point
    ],
)
def test_a_reading_at_or_above_the_lowest_clear_level_is_not_quiet(
    fraction_lel: float, quiet: bool
) -> None:
    # Default set points: LOW 20 %LEL, deadband 2 %LEL (GasSetpoints defaults).
    evaluator = GasAlarmEvaluator(table_of(2))
    detectors, times, amounts, _ = noise(2, 5)
    evaluator.evaluate(detectors, times, amounts)
    before = evaluator.quiet_batches
    reading = np.array([[fraction_lel * LEL[0], 0.0]])
    evaluator.evaluate(np.array([1]), np.array([100.0]), reading)
    assert (evaluator.quiet_batches > before) is quiet


def test_a_detector_in_alarm_keeps_its_batches_off_the_quiet_path() -> None:
    evaluator = GasAlarmEvaluator(table_of(2))
    detectors, times, amounts, _ = noise(2, 5)
    evaluator.evaluate(detectors, times, amounts)
    high = np.array([[0.5 * LEL[0], 0.0]])
    for time_s in (20.0, 22.0):  # two readings 2 s apart: past the 1 s on-delay
        evaluator.evaluate(np.array([0]), np.array([time_s]), high)
    assert evaluator.active[0].any()
    quiet = np.array([[0.01 * LEL[0], 0.0]])
    before = evaluator.quiet_batches
    evaluator.evaluate(np.array([1]), np.array([24.0]), quiet)  # the other detector: quiet
    assert evaluator.quiet_batches == before + 1
    evaluator.evaluate(np.array([0]), np.array([24.0]), quiet)  # alarm set: general path
    assert evaluator.quiet_batches == before + 1
    assert evaluator.active[0].any()  # the 10 s off-delay holds it


def test_an_alarm_waiting_for_its_off_delay_clears_although_the_readings_are_quiet() -> None:
    # LOW and HIGH active at 2 s; the condition goes off at the 4 s reading (1 %LEL); every
    # later reading is quiet, one per batch, but the alarms are still set: the general path
    # runs and clears both at 14 s (10 s off-delay), exactly as the reference does.
    table = table_of(1)
    evaluator, reference = GasAlarmEvaluator(table), SequentialGasAlarmEvaluator(table)
    cleared: list[float] = []
    for time_s in np.arange(0.0, 30.0, PERIOD_S):
        fraction = 0.5 if time_s < 4.0 else 0.01
        batch = (np.array([0]), np.array([time_s]), np.array([[fraction * LEL[0], 0.0]]))
        found = evaluator.evaluate(*batch)
        assert_same(found, reference.evaluate(*batch))
        transitions = found.transitions
        cleared += transitions.time_s[~transitions.became_active].tolist()
    assert cleared == [14.0, 14.0]  # LOW and HIGH
    assert not evaluator.active.any()
    assert evaluator.quiet_batches == 7  # 16 .. 28 s: nothing set any more
