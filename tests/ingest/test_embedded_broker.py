import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from pipesentinel.ingest.embedded_broker import EmbeddedBroker

RECEIVE_TIMEOUT_S = 10.0


def test_embedded_broker_delivers_qos1_and_retained_messages() -> None:
    with EmbeddedBroker() as broker:
        received: list[tuple[str, bytes, bool]] = []
        done = threading.Event()
        retained_seen = threading.Event()

        def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
            received.append((message.topic, bytes(message.payload), bool(message.retain)))
            retained_seen.set()
            if len(received) == 3:
                done.set()

        publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="pub")
        publisher.connect(broker.host, broker.port)
        publisher.loop_start()
        publisher.publish(
            "pipesentinel/v1/t/status/d1", b"online", qos=1, retain=True
        ).wait_for_publish(5)

        subscriber = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sub")
        subscriber.on_message = on_message
        subscriber.connect(broker.host, broker.port)
        subscriber.subscribe("pipesentinel/v1/#", qos=1)
        subscriber.loop_start()
        try:
            # The retained status arrives on subscription; wait for it before publishing more.
            assert retained_seen.wait(RECEIVE_TIMEOUT_S)
            for index in range(2):
                publisher.publish(f"pipesentinel/v1/t/gas/d{index}", b"x", qos=1).wait_for_publish(
                    5
                )
            assert done.wait(RECEIVE_TIMEOUT_S), received
        finally:
            subscriber.loop_stop()
            publisher.loop_stop()
            subscriber.disconnect()
            publisher.disconnect()
    assert received[0] == ("pipesentinel/v1/t/status/d1", b"online", True)
    assert sorted(topic for topic, _, _ in received[1:]) == [
        "pipesentinel/v1/t/gas/d0",
        "pipesentinel/v1/t/gas/d1",
    ]


def test_two_brokers_get_distinct_ports() -> None:
    with EmbeddedBroker() as first, EmbeddedBroker() as second:
        assert first.port != second.port
        assert first.url.startswith("mqtt://127.0.0.1:")
