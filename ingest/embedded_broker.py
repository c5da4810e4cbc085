"""An in-process MQTT broker for development and the demo (amqtt, MQTT 3.1.1).

Production points ``broker.url`` at Mosquitto, configured from the site model with per-device
passwords and ACLs (:mod:`pipesentinel.ingest.mosquitto_auth`). The embedded broker allows
anonymous clients on loopback only and keeps sessions in memory; it is refused outside development
by :class:`pipesentinel.settings.Settings`. Known limit (measured here with amqtt 0.12.1): messages
published while a persistent-session subscriber is disconnected are not queued for it, so the
"nothing lost across a service restart" guarantee holds with Mosquitto, not with this broker.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType
from typing import Any

from amqtt.broker import Broker

LOOPBACK_HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0

logger = logging.getLogger(__name__)


def free_loopback_port() -> int:
    """A TCP port on loopback that was free a moment ago (the OS chose it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt running on its own event loop in a daemon thread.

    Parameters
    ----------
    port
        TCP port on 127.0.0.1; ``0`` picks a free one.
    """

    def __init__(self, *, port: int = 0) -> None:
        self.host = LOOPBACK_HOST
        self.port = port or free_loopback_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._started = threading.Event()
        self._broker: Broker | None = None
        self._start_error: BaseException | None = None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://{self.host}:{self.port}"

    def _config(self) -> dict[str, Any]:
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only the anonymous-auth plugin: the default set also logs every packet and runs
            # $SYS publishing, which costs throughput and floods the log.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._broker = Broker(self._config())
            await self._broker.start()

        try:
            self._loop.run_until_complete(start())
        except Exception as error:  # noqa: BLE001 - reported to the starting thread, not lost
            self._start_error = error
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S):
            raise RuntimeError(f"embedded broker did not start within {START_TIMEOUT_S} s")
        if self._start_error is not None:
            raise RuntimeError(
                f"embedded broker failed to start on {self.url}: {self._start_error}"
            ) from self._start_error
        logger.info("embedded MQTT broker listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Shut the broker down and stop its thread."""
        if self._broker is not None and self._loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                future.result(STOP_TIMEOUT_S)
            except Exception:
                logger.exception("embedded broker shutdown failed")
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(STOP_TIMEOUT_S)
        self._broker = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
