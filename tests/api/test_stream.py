"""The stream broadcaster: bounded per-client queues; a slow client is dropped, never waited for."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipesentinel.api.stream import DROP_SLOW, StreamBroadcaster, record_json
from pipesentinel.detection.alarms import AlarmEvent, AlarmState, EventType
from pipesentinel.detection.engine import EngineOutput
from pipesentinel.ingest.records import CameraChannel, CameraFrame, DeviceStatusChange


def test_a_client_that_does_not_drain_is_dropped_and_counted() -> None:
    async def scenario() -> None:
        broadcaster = StreamBroadcaster(queue_messages=3)
        loop = asyncio.get_running_loop()
        fast = broadcaster.connect(loop)
        slow = broadcaster.connect(loop)
        for index in range(3):
            broadcaster.publish({"type": "x", "index": index})
        assert [m["index"] for m in await fast.next_batch()] == [0, 1, 2]
        broadcaster.publish({"type": "x", "index": 3})  # the slow client's fourth: dropped
        assert slow.dropped_reason == DROP_SLOW
        assert await slow.next_batch() == []
        assert [m["index"] for m in await fast.next_batch()] == [3]
        stats = broadcaster.stats()
        assert stats.clients == 1
        assert stats.dropped_clients == {DROP_SLOW: 1}
        assert stats.messages_published == 4
        assert stats.connected_total == 2

    asyncio.run(scenario())


def test_publishing_from_another_thread_wakes_the_client() -> None:
    async def scenario() -> list[int]:
        broadcaster = StreamBroadcaster(queue_messages=100)
        client = broadcaster.connect(asyncio.get_running_loop())

        def produce() -> None:
            for index in range(5):
                broadcaster.publish({"type": "x", "index": index})

        thread = threading.Thread(target=produce)
        thread.start()
        received: list[int] = []
        while len(received) < 5:
            received += [m["index"] for m in await asyncio.wait_for(client.next_batch(), 30.0)]
        thread.join()
        return received

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4]


def test_engine_output_becomes_alarm_and_incident_messages() -> None:
    async def scenario() -> list[dict[str, object]]:
        broadcaster = StreamBroadcaster(queue_messages=10)
        client = broadcaster.connect(asyncio.get_running_loop())
        event = AlarmEvent(
            sequence=7,
            time_s=1.0e9,
            event=EventType.ACKNOWLEDGED,
            alarm_id="GD07.methane.low",
            from_state=AlarmState.UNACK,
            to_state=AlarmState.ACKED,
            user="alice",
            reason=None,
            value=None,
            detail="",
            annunciation=False,
        )
        broadcaster.on_engine_output(EngineOutput(alarm_events=[event]))
        broadcaster.on_records([])  # nothing to say
        return await client.next_batch()

    (message,) = asyncio.run(scenario())
    assert message["type"] == "alarm_event"
    assert (message["alarm_id"], message["to_state"], message["user"]) == (
        "GD07.methane.low",
        "acked",
        "alice",
    )


def test_records_are_json_without_images() -> None:
    frame = CameraFrame(
        site_id="s",
        device_id="CAM01",
        channel=CameraChannel.THERMAL,
        time_s=2.0,
        seq=4,
        width_px=640,
        height_px=512,
        image=b"\x89PNG...",
        received_time_s=2.5,
    )
    assert record_json(frame) == {
        "kind": "camera_frame",
        "device_id": "CAM01",
        "received_time_s": 2.5,
        "time_s": 2.0,
        "seq": 4,
        "width_px": 640,
        "height_px": 512,
        "channel": "thermal",
    }
    status = DeviceStatusChange(site_id="s", device_id="GD01", online=False, received_time_s=3.0)
    assert record_json(status)["online"] is False


def test_the_queue_must_hold_a_message() -> None:
    with pytest.raises(ValueError, match="queue_messages"):
        StreamBroadcaster(queue_messages=0)
