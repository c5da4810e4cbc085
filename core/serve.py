"""``pipesentinel serve``: the whole service against an external broker, with the HTTP API.

The process layout of ``pipesentinel ingest`` (:mod:`pipesentinel.ingest.workers`) plus the API:

- the storing ingest in a child process of its own (QoS 1 persistent session, at
  ``settings.ingest.storage_nice``);
- in this process, the detection chain (its own MQTT feed, the detection service, the response
  service and the notifier) and the API (:func:`pipesentinel.api.app.create_app`) served by
  uvicorn on ``settings.api.host``/``settings.api.port``. The API needs the live detection
  service in its process: acknowledgements, shelving and zone confirmations run on the engine's
  lock, and the live stream listens to its output; the feed's records reach the stream too.

Everything comes from the settings (a ``.env`` file and ``PIPESENTINEL_*`` variables,
:mod:`pipesentinel.settings`): the broker URL and credentials, the telemetry store (SQLite or
InfluxDB), the paths of the journals and the API's token file (``pipesentinel token mint``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from pipesentinel.api.app import create_app
from pipesentinel.api.context import open_api_context
from pipesentinel.ingest.workers import (
    CONNECT_TIMEOUT_S,
    DetectionChain,
    Role,
    ServiceProcess,
    detection_chain,
)
from pipesentinel.settings import Settings
from pipesentinel.site import Site

__all__ = ["Serving", "serving", "uvicorn_server"]


@dataclass(frozen=True)
class Serving:
    """The running service: the API app, the detection chain and the storage child."""

    app: FastAPI
    chain: DetectionChain
    storage: ServiceProcess


@contextlib.contextmanager
def serving(settings: Settings, site: Site) -> Iterator[Serving]:
    """Start storage, detection and the API app (not yet listening); stop them on exit."""
    if settings.broker.url is None:
        raise ValueError("serve: set PIPESENTINEL_BROKER__URL to the broker's mqtt:// URL")
    with (
        ServiceProcess(Role.STORAGE, settings=settings, site=site) as storage,
        detection_chain(settings=settings, site=site) as chain,
    ):
        if not (
            chain.feed.wait_connected(CONNECT_TIMEOUT_S)
            and chain.notifier.wait_connected(CONNECT_TIMEOUT_S)
        ):
            raise TimeoutError(f"serve: not connected to {settings.broker.url}")
        with open_api_context(
            settings,
            site,
            detection=chain.detection,
            response=chain.response,
            ingest_stats=chain.feed.stats,
        ) as context:
            app = create_app(context)
            chain.feed.subscribe(app.state.api.broadcaster.on_records)
            yield Serving(app=app, chain=chain, storage=storage)


def uvicorn_server(app: FastAPI, *, host: str, port: int) -> uvicorn.Server:
    """A uvicorn server for ``app`` (``server.run()`` blocks; ``should_exit`` stops it)."""
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    return uvicorn.Server(config)


def run_in_thread(server: uvicorn.Server) -> threading.Thread:
    """Run ``server`` on a thread of its own (tests and the demo); returns the thread."""
    thread = threading.Thread(target=server.run, name="api-server", daemon=True)
    thread.start()
    return thread
