"""The last camera frames of each camera channel, kept as image files on disk.

Layout: ``{directory}/{site}/{device}/{channel}/{time_ms}-{seq}-{width}x{height}-{received_ms}.
{jpg|png}``, with ``time_ms`` zero-padded so that names sort by time. The file is the image as
the camera sent it (viewable as is); its metadata is in the name, so one atomic rename publishes
a frame and its metadata together. Times are kept to the millisecond, like the telemetry stores.

Each ``put`` writes a temporary file, fsyncs it and renames it into place, then removes the
oldest frames beyond ``kept_per_channel``. One process owns a frames directory: temporary files
left by a crash are removed when the store is opened.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
from pathlib import Path
from typing import Final

from pipesentinel.ingest.records import CameraChannel, CameraFrame
from pipesentinel.ingest.storage.base import MILLISECONDS_PER_SECOND, time_to_ms
from pipesentinel.settings import StorageSettings

EXTENSION: Final[dict[CameraChannel, str]] = {
    CameraChannel.VISIBLE: "jpg",
    CameraChannel.THERMAL: "png",
}
TIME_DIGITS: Final = 15  # milliseconds since 1970 fit in 15 digits until the year 33658
TEMPORARY_PREFIX: Final = ".frame-tmp-"
_NAME: Final = re.compile(
    r"^(?P<time_ms>\d+)-(?P<seq>\d+)-(?P<width>\d+)x(?P<height>\d+)-(?P<received_ms>\d+)"
    r"\.(?P<extension>jpg|png)$"
)
_UNSAFE_COMPONENTS: Final = frozenset({"", ".", ".."})


def _path_component(name: str, value: str) -> str:
    """``value`` if it can be one directory name; ``ValueError`` naming it otherwise."""
    if value in _UNSAFE_COMPONENTS or any(ch in value for ch in "/\\\x00"):
        raise ValueError(f"{name} {value!r} cannot be used as a directory name")
    return value


def _sort_key(path: Path) -> tuple[int, int]:
    match = _NAME.match(path.name)
    if match is None:  # filtered out by _frames(); keeps the key total
        return (-1, -1)
    return int(match["time_ms"]), int(match["seq"])


class FileFrameStore:
    """Keeps the most recent frames of each camera channel (a ``FrameStore``).

    Parameters
    ----------
    directory
        Root directory of the frames; created if missing.
    kept_per_channel
        Frames kept per camera channel (at least 1); older ones are deleted.
    """

    def __init__(self, directory: Path | str, *, kept_per_channel: int) -> None:
        if kept_per_channel < 1:
            raise ValueError(f"kept_per_channel must be at least 1, got {kept_per_channel}")
        self.directory = Path(directory)
        self.kept_per_channel = kept_per_channel
        self._lock = threading.Lock()
        self.directory.mkdir(parents=True, exist_ok=True)
        for stale in self.directory.rglob(f"{TEMPORARY_PREFIX}*"):
            stale.unlink(missing_ok=True)

    @classmethod
    def from_settings(cls, settings: StorageSettings) -> FileFrameStore:
        """The store described by the ``storage`` settings section."""
        return cls(settings.frames_dir, kept_per_channel=settings.frames_kept_per_channel)

    def channel_directory(self, *, site_id: str, device_id: str, channel: CameraChannel) -> Path:
        """Where the frames of one camera channel are kept."""
        return (
            self.directory
            / _path_component("site_id", site_id)
            / _path_component("device_id", device_id)
            / CameraChannel(channel).value
        )

    def _frames(self, directory: Path) -> list[Path]:
        """The frame files of a channel directory, oldest first."""
        try:
            names = [path for path in directory.iterdir() if _NAME.match(path.name)]
        except FileNotFoundError:
            return []
        return sorted(names, key=_sort_key)

    def put(self, frame: CameraFrame) -> None:
        """Keep ``frame`` (atomically) and delete the oldest frames beyond the retention."""
        time_ms = time_to_ms(frame.time_s)
        received_ms = time_to_ms(frame.received_time_s)
        for name, number in (
            ("time_s", time_ms),
            ("received_time_s", received_ms),
            ("seq", frame.seq),
            ("width_px", frame.width_px),
            ("height_px", frame.height_px),
        ):
            if number < 0:
                raise ValueError(
                    f"frame of {frame.site_id}/{frame.device_id}: {name} is negative ({number})"
                )
        directory = self.channel_directory(
            site_id=frame.site_id, device_id=frame.device_id, channel=frame.channel
        )
        identity = f"{time_ms:0{TIME_DIGITS}d}-{frame.seq}-"
        name = (
            f"{identity}{frame.width_px}x{frame.height_px}-{received_ms}.{EXTENSION[frame.channel]}"
        )
        with self._lock:
            directory.mkdir(parents=True, exist_ok=True)
            temporary = directory / f"{TEMPORARY_PREFIX}{secrets.token_hex(6)}"
            try:
                with temporary.open("xb") as stream:
                    stream.write(frame.image)
                    stream.flush()
                    os.fsync(stream.fileno())
                temporary.replace(directory / name)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            frames = self._frames(directory)
            # The same frame sent again (same time and seq) replaces the earlier copy.
            for duplicate in frames:
                if duplicate.name.startswith(identity) and duplicate.name != name:
                    duplicate.unlink(missing_ok=True)
            frames = [path for path in frames if path.exists()]
            for old in frames[: max(0, len(frames) - self.kept_per_channel)]:
                old.unlink(missing_ok=True)

    def recent(
        self, *, site_id: str, device_id: str, channel: CameraChannel, limit: int | None = None
    ) -> tuple[CameraFrame, ...]:
        """The kept frames of a camera channel, newest first (at most ``limit``)."""
        directory = self.channel_directory(site_id=site_id, device_id=device_id, channel=channel)
        frames: list[CameraFrame] = []
        for path in reversed(self._frames(directory)):
            if limit is not None and len(frames) >= limit:
                break
            match = _NAME.match(path.name)
            if match is None:
                continue
            try:
                image = path.read_bytes()
            except FileNotFoundError:  # removed by a concurrent put's retention
                continue
            frames.append(
                CameraFrame(
                    site_id=site_id,
                    device_id=device_id,
                    channel=CameraChannel(channel),
                    time_s=int(match["time_ms"]) / MILLISECONDS_PER_SECOND,
                    seq=int(match["seq"]),
                    width_px=int(match["width"]),
                    height_px=int(match["height"]),
                    image=image,
                    received_time_s=int(match["received_ms"]) / MILLISECONDS_PER_SECOND,
                )
            )
        return tuple(frames)

    def latest(self, *, site_id: str, device_id: str, channel: CameraChannel) -> CameraFrame | None:
        """The newest kept frame of that camera channel, or ``None``."""
        frames = self.recent(site_id=site_id, device_id=device_id, channel=channel, limit=1)
        return frames[0] if frames else None
