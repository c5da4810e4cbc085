"""The on-disk frame store: retention, atomic publication, ordering, safety of paths."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from pipesentinel.ingest.records import CameraChannel, CameraFrame
from pipesentinel.ingest.storage.factory import open_frame_store
from pipesentinel.ingest.storage.frames import TEMPORARY_PREFIX, FileFrameStore
from pipesentinel.settings import StorageSettings

T0 = 1_700_000_000.0


def frame(
    time_s: float,
    *,
    seq: int = 1,
    device: str = "CAM-01",
    channel: CameraChannel = CameraChannel.VISIBLE,
    image: bytes | None = None,
) -> CameraFrame:
    return CameraFrame(
        site_id="s",
        device_id=device,
        channel=channel,
        time_s=time_s,
        seq=seq,
        width_px=640,
        height_px=480,
        image=image if image is not None else f"frame at {time_s}".encode(),
        received_time_s=time_s + 0.125,
    )


def test_latest_returns_the_frame_as_put(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=3)
    assert store.latest(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE) is None
    original = frame(T0 + 0.042, seq=7, image=b"\xff\xd8\xff\xe0 jpeg bytes")
    store.put(original)
    assert store.latest(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE) == original
    files = list((tmp_path / "s" / "CAM-01" / "visible").iterdir())
    assert [path.name for path in files] == ["001700000000042-7-640x480-1700000000167.jpg"]
    assert files[0].read_bytes() == original.image  # the file is the image itself


def test_only_the_newest_frames_are_kept(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=3)
    for k in range(10):
        store.put(frame(T0 + k, seq=k))
    kept = store.recent(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE)
    assert [f.seq for f in kept] == [9, 8, 7]
    assert len(list((tmp_path / "s" / "CAM-01" / "visible").iterdir())) == 3
    # A late frame older than all kept ones is not kept and does not become "latest".
    store.put(frame(T0 - 100, seq=99))
    latest = store.latest(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE)
    assert latest is not None
    assert latest.seq == 9
    assert len(store.recent(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE)) == 3


def test_ordering_is_by_time_then_seq_not_by_name(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=5)
    store.put(frame(T0, seq=10))
    store.put(frame(T0, seq=9))  # "9" sorts after "10" as text
    store.put(frame(T0 - 1, seq=100))
    kept = store.recent(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE)
    assert [f.seq for f in kept] == [10, 9, 100]


def test_the_same_frame_sent_twice_is_kept_once(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=5)
    store.put(frame(T0, seq=1, image=b"first copy"))
    store.put(frame(T0, seq=1, image=b"second copy"))
    kept = store.recent(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE)
    assert [f.image for f in kept] == [b"second copy"]


def test_channels_and_cameras_are_kept_apart(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=1)
    store.put(frame(T0, device="CAM-01", channel=CameraChannel.VISIBLE, image=b"v1"))
    store.put(frame(T0, device="CAM-01", channel=CameraChannel.THERMAL, image=b"t1"))
    store.put(frame(T0, device="CAM-02", channel=CameraChannel.VISIBLE, image=b"v2"))
    images = {
        (device, channel): store.latest(site_id="s", device_id=device, channel=channel)
        for device in ("CAM-01", "CAM-02")
        for channel in CameraChannel
    }
    assert {key: (f.image if f else None) for key, f in images.items()} == {
        ("CAM-01", CameraChannel.VISIBLE): b"v1",
        ("CAM-01", CameraChannel.THERMAL): b"t1",
        ("CAM-02", CameraChannel.VISIBLE): b"v2",
        ("CAM-02", CameraChannel.THERMAL): None,
    }
    assert (tmp_path / "s" / "CAM-01" / "thermal").iterdir().__next__().suffix == ".png"


@pytest.mark.parametrize("bad", ["..", ".", "", "a/b", "a\\b", "nul\x00"])
def test_ids_that_would_escape_the_directory_are_refused(tmp_path: Path, bad: str) -> None:
    store = FileFrameStore(tmp_path / "frames", kept_per_channel=1)
    with pytest.raises(ValueError, match="directory name"):
        store.put(frame(T0, device=bad))
    with pytest.raises(ValueError, match="directory name"):
        store.latest(site_id=bad, device_id="CAM-01", channel=CameraChannel.VISIBLE)
    assert list(tmp_path.iterdir()) == [tmp_path / "frames"]


def test_negative_numbers_are_refused(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=1)
    with pytest.raises(ValueError, match="seq is negative"):
        store.put(frame(T0, seq=-1))


def test_stale_temporary_files_are_removed_on_open(tmp_path: Path) -> None:
    channel = tmp_path / "s" / "CAM-01" / "visible"
    channel.mkdir(parents=True)
    (channel / f"{TEMPORARY_PREFIX}crashed").write_bytes(b"half a frame")
    store = FileFrameStore(tmp_path, kept_per_channel=2)
    assert list(channel.iterdir()) == []
    store.put(frame(T0))
    assert [path.name.startswith(TEMPORARY_PREFIX) for path in channel.iterdir()] == [False]


def test_a_reader_never_sees_a_partial_frame(tmp_path: Path) -> None:
    store = FileFrameStore(tmp_path, kept_per_channel=2)
    images = [bytes([k % 251]) * (50_000 + 1000 * k) for k in range(60)]
    written = set(images)
    bad: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            latest = store.latest(site_id="s", device_id="CAM-01", channel=CameraChannel.VISIBLE)
            if latest is not None and latest.image not in written:
                bad.append(latest.image[:20])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for k, image in enumerate(images):
            store.put(frame(T0 + k, seq=k, image=image))
    finally:
        done.set()
        reader.join()
    assert bad == []


def test_construction_and_factory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="kept_per_channel"):
        FileFrameStore(tmp_path, kept_per_channel=0)
    settings = StorageSettings(frames_dir=tmp_path / "frames", frames_kept_per_channel=4)
    store = open_frame_store(settings)
    assert store.directory == tmp_path / "frames"
    assert store.kept_per_channel == 4
    assert store.directory.is_dir()
