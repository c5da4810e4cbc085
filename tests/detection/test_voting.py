"""Zone voting: 1ooN suspects, 2ooN confirms, faults degrade the vote and never count as gas."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipesentinel.detection.voting import CAMERA_CLOUD_DISTANCE_M, ZoneIndex, vote
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"


@functools.cache
def _site_index() -> ZoneIndex:
    site: Site = load_site(SITE_DIR)
    return ZoneIndex.for_site(site)


@pytest.fixture(scope="module")
def index() -> ZoneIndex:
    return _site_index()


def _zone_members(index: ZoneIndex, zone: int) -> np.ndarray:
    return np.flatnonzero(index.zone_of_detector == zone)


def _empty(index: ZoneIndex) -> np.ndarray:
    return np.zeros(index.zone_of_detector.shape[0], dtype=np.bool_)


def test_every_zone_has_two_or_more_detectors(index: ZoneIndex) -> None:
    assert index.n_zones == 13  # the reference site's voting zones (sites/wanli/site.toml)
    assert np.all(index.detectors_per_zone >= 2)


def test_one_low_suspects_two_low_confirm(index: ZoneIndex) -> None:
    members = _zone_members(index, 0)
    low = _empty(index)
    low[members[0]] = True
    result = vote(index, low_active=low, high_active=_empty(index), in_fault=_empty(index))
    assert result.suspected[0]
    assert not result.confirmed[0]
    assert "suspected: 1 of" in result.reason(0)
    low[members[1]] = True
    result = vote(index, low_active=low, high_active=_empty(index), in_fault=_empty(index))
    assert result.confirmed[0]
    assert not result.suspected[1:].any()


def test_two_low_in_different_zones_do_not_confirm(index: ZoneIndex) -> None:
    low = _empty(index)
    low[_zone_members(index, 0)[0]] = True
    low[_zone_members(index, 1)[0]] = True
    result = vote(index, low_active=low, high_active=_empty(index), in_fault=_empty(index))
    assert not result.confirmed.any()
    assert result.suspected[:2].all()


def test_high_needs_a_camera_to_confirm_alone(index: ZoneIndex) -> None:
    high = _empty(index)
    high[_zone_members(index, 2)[0]] = True
    result = vote(index, low_active=_empty(index), high_active=high, in_fault=_empty(index))
    assert result.suspected[2]
    assert not result.confirmed[2]
    cameras = np.zeros(index.n_zones, dtype=np.bool_)
    cameras[2] = True
    result = vote(
        index,
        low_active=_empty(index),
        high_active=high,
        in_fault=_empty(index),
        camera_gas=cameras,
    )
    assert result.confirmed[2]
    assert "camera" in result.reason(2)


def test_camera_gas_alone_suspects_and_never_confirms(index: ZoneIndex) -> None:
    cameras = np.zeros(index.n_zones, dtype=np.bool_)
    cameras[2] = True
    sources = [""] * index.n_zones
    sources[2] = "CAM4 laser"
    result = vote(
        index,
        low_active=_empty(index),
        high_active=_empty(index),
        in_fault=_empty(index),
        camera_gas=cameras,
        camera_sources=sources,
    )
    assert result.suspected.tolist() == cameras.tolist()
    assert not result.confirmed.any()
    assert "CAM4 laser sees gas" in result.reason(2)
    assert "never confirms" in result.reason(2)
    # Not even in a degraded zone, where one healthy detector at LOW would confirm.
    fault = _empty(index)
    fault[_zone_members(index, 2)[0]] = True
    result = vote(
        index,
        low_active=_empty(index),
        high_active=_empty(index),
        in_fault=fault,
        camera_gas=cameras,
    )
    assert result.suspected[2]
    assert result.degraded[2]
    assert not result.confirmed[2]
    assert "a camera sees gas" in result.reason(2)


def test_blind_zone_seen_by_a_camera_is_suspected(index: ZoneIndex) -> None:
    fault = _empty(index)
    fault[_zone_members(index, 4)] = True
    cameras = np.zeros(index.n_zones, dtype=np.bool_)
    cameras[4] = True
    result = vote(index, low_active=fault, high_active=fault, in_fault=fault, camera_gas=cameras)
    assert result.blind[4]
    assert result.suspected[4]
    assert not result.confirmed[4]
    assert "cannot vote; suspected: a camera sees gas" in result.reason(4)


def test_camera_sources_must_name_every_zone(index: ZoneIndex) -> None:
    with pytest.raises(ValueError, match="camera_sources"):
        vote(
            index,
            low_active=_empty(index),
            high_active=_empty(index),
            in_fault=_empty(index),
            camera_sources=["CAM1 laser"],
        )


def test_faulty_detector_never_counts_and_degrades_the_vote(index: ZoneIndex) -> None:
    members = _zone_members(index, 3)
    low = _empty(index)
    fault = _empty(index)
    low[members[0]] = True
    fault[members[0]] = True  # in alarm AND in fault: must not count
    result = vote(index, low_active=low, high_active=low.copy(), in_fault=fault)
    assert not result.suspected[3]
    assert result.degraded[3]
    n = int(index.detectors_per_zone[3])
    assert f"vote degraded from 2oo{n} to 1oo{n - 1}" in result.reason(3)
    low[members[1]] = True  # one healthy detector at LOW now confirms
    result = vote(index, low_active=low, high_active=_empty(index), in_fault=fault)
    assert result.confirmed[3]


def test_zone_with_all_detectors_in_fault_is_blind(index: ZoneIndex) -> None:
    fault = _empty(index)
    fault[_zone_members(index, 4)] = True
    result = vote(index, low_active=fault, high_active=fault, in_fault=fault)
    assert result.blind[4]
    assert not result.suspected[4]
    assert not result.confirmed[4]
    assert "cannot vote" in result.reason(4)


def test_shape_mismatch_is_refused(index: ZoneIndex) -> None:
    with pytest.raises(ValueError, match="low_active must have shape"):
        vote(index, low_active=np.zeros(3, bool), high_active=_empty(index), in_fault=_empty(index))


@given(data=st.data())
def test_vote_invariants(data: st.DataObject) -> None:
    site_index = _site_index()
    n = site_index.zone_of_detector.shape[0]
    flags = st.lists(st.booleans(), min_size=n, max_size=n).map(lambda v: np.array(v, bool))
    low, high, fault = data.draw(flags), data.draw(flags), data.draw(flags)
    result = vote(site_index, low_active=low, high_active=high, in_fault=fault)
    # Confirmed implies suspected; blind zones neither; faults never add votes.
    assert np.all(~result.confirmed | result.suspected)
    assert not np.any(result.blind & result.suspected)
    # A camera adds suspicion, never confirmation without a healthy detector at HIGH.
    zones = site_index.n_zones
    cameras = data.draw(
        st.lists(st.booleans(), min_size=zones, max_size=zones).map(lambda v: np.array(v, bool))
    )
    seen = vote(site_index, low_active=low, high_active=high, in_fault=fault, camera_gas=cameras)
    assert np.array_equal(seen.suspected, result.suspected | cameras)
    assert np.all(seen.confirmed >= result.confirmed)
    newly = seen.confirmed & ~result.confirmed
    assert np.all(cameras[newly] & (seen.high_votes[newly] >= 1))
    healthy_only = vote(
        site_index, low_active=low & ~fault, high_active=high & ~fault, in_fault=fault
    )
    assert np.array_equal(result.suspected, healthy_only.suspected)
    assert np.array_equal(result.confirmed, healthy_only.confirmed)
    # Without faults, confirmation is exactly 2ooN on LOW-or-HIGH.
    clean = vote(site_index, low_active=low, high_active=high, in_fault=np.zeros(n, bool))
    expected = site_index.count(low | high) >= 2
    assert np.array_equal(clean.confirmed, expected)


def test_high_with_a_camera_sighting_nearby_confirms_even_in_a_neighbouring_zone(
    index: ZoneIndex,
) -> None:
    members = _zone_members(index, 1)
    high = _empty(index)
    high[members[0]] = True
    near = _empty(index)
    near[members[0]] = True
    result = vote(
        index,
        low_active=high,
        high_active=high,
        in_fault=_empty(index),
        camera_near=near,
    )
    assert result.confirmed[1]
    assert result.camera_near_high is not None
    assert result.camera_near_high[1]
    assert f"within {CAMERA_CLOUD_DISTANCE_M:.0f} m" in result.reason(1)
    # Near a detector that is only at LOW, or near a quiet one: no confirmation, no suspicion.
    low_only = vote(
        index, low_active=high, high_active=_empty(index), in_fault=_empty(index), camera_near=near
    )
    assert not low_only.confirmed[1]
    quiet = vote(
        index,
        low_active=_empty(index),
        high_active=_empty(index),
        in_fault=_empty(index),
        camera_near=near,
    )
    assert not quiet.suspected.any()
    # The HIGH of a detector in fault never counts, however close the camera's gas.
    faulty = vote(index, low_active=high, high_active=high, in_fault=near.copy(), camera_near=near)
    assert not faulty.confirmed[1]
    # A sighting near another detector of the zone does not confirm this detector's HIGH.
    other = _empty(index)
    other[members[1]] = True
    elsewhere = vote(
        index, low_active=high, high_active=high, in_fault=_empty(index), camera_near=other
    )
    assert not elsewhere.confirmed[1]


def test_camera_near_must_have_one_flag_per_detector(index: ZoneIndex) -> None:
    with pytest.raises(ValueError, match="camera_near"):
        vote(
            index,
            low_active=_empty(index),
            high_active=_empty(index),
            in_fault=_empty(index),
            camera_near=np.zeros(3, dtype=np.bool_),
        )
