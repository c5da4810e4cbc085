"""Real ``mosquitto`` and ``influxd`` processes for tests, benchmarks and fault drills.

Each process gets a free loopback port, a temporary directory holding its configuration, data and
log, and is ready when :meth:`ServiceProcess.start` returns (TCP connect for mosquitto, HTTP
``/ping`` for influxd). It can be stopped and started again on the same port with the same data
(a broker restart, a database outage), killed (a crash), or frozen with SIGSTOP (a hung server).
Every start-up failure raises :class:`ServiceError` with the tail of the process's log.

Example
-------
>>> with MosquittoProcess() as broker:  # doctest: +SKIP
...     client.connect(broker.host, broker.port)
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, ClassVar, Final, Self

from pipesentinel.ingest.mosquitto_auth import BrokerConfig
from pipesentinel.ingest.storage.influxdb import influxql_identifier, influxql_string

LOOPBACK_HOST: Final = "127.0.0.1"
STARTUP_TIMEOUT_S: Final = 30.0
SHUTDOWN_TIMEOUT_S: Final = 15.0
POLL_INTERVAL_S: Final = 0.05
PROBE_TIMEOUT_S: Final = 1.0
LOG_TAIL_CHARS: Final = 4000
PORT_CLASH_RETRIES: Final = 3  # a free port can be taken between choosing it and binding it

# Queue depth per client for tests: a slow subscriber must not lose QoS 1 messages in a burst
# (mosquitto's default, 1000, drops beyond it).
TEST_MAX_QUEUED_MESSAGES: Final = 1_000_000

# Debian/Ubuntu install mosquitto in /usr/sbin, which is not on a normal user's PATH.
MOSQUITTO_SEARCH_PATHS: Final = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")
INFLUXD_SEARCH_PATHS: Final = ("/usr/bin/influxd", "/usr/local/bin/influxd")
INFLUX_HTTP_NO_CONTENT: Final = 204  # /ping answers 204 when influxd is ready


class ServiceError(RuntimeError):
    """A test service could not be started or stopped; the message holds its log tail."""


class ServiceNotInstalledError(ServiceError):
    """The service's executable is not installed on this machine."""


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK_HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def find_executable(name: str, search_paths: tuple[str, ...] = ()) -> Path | None:
    """``name`` on PATH, else the first executable of ``search_paths``, else ``None``."""
    found = shutil.which(name)
    if found is not None:
        return Path(found)
    for candidate in search_paths:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def find_mosquitto() -> Path | None:
    """The mosquitto broker executable, or ``None``."""
    return find_executable("mosquitto", MOSQUITTO_SEARCH_PATHS)


def find_influxd() -> Path | None:
    """The InfluxDB 1.x server executable, or ``None``."""
    return find_executable("influxd", INFLUXD_SEARCH_PATHS)


def _toml_string(value: str | Path) -> str:
    """A TOML basic string (JSON's escapes are a subset of TOML's)."""
    return json.dumps(str(value))


class ServiceProcess:
    """A server process on a loopback port with its own directory; see the module docstring.

    Parameters
    ----------
    executable
        Path of the server binary.
    port
        TCP port on 127.0.0.1; ``None`` picks a free one.
    directory
        Where configuration, data and log go; ``None`` makes a temporary directory that
        :meth:`close` removes.
    startup_timeout_s
        How long :meth:`start` waits for the service to answer [s].
    """

    name: ClassVar[str] = "service"
    _live: ClassVar[set[ServiceProcess]] = set()

    def __init__(
        self,
        *,
        executable: Path,
        port: int | None = None,
        directory: Path | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        if not os.access(executable, os.X_OK):
            raise ServiceNotInstalledError(f"{self.name}: {executable} is not an executable")
        self.executable = executable
        self.host = LOOPBACK_HOST
        self._port_chosen = port is None
        self.port = free_loopback_port() if port is None else port
        self._owns_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix=f"pipesentinel-{self.name}-"))
            if directory is None
            else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / f"{self.name}.log"
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._frozen = False
        self._starts = 0

    # -- to be provided by subclasses -------------------------------------------------------

    def _write_config(self) -> list[str]:
        """Write the configuration into :attr:`directory`; return the command line."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Whether the service answers."""
        raise NotImplementedError

    def _after_first_start(self) -> None:
        """One-off set-up once the service first answers."""

    def _choose_new_ports(self) -> None:
        """Pick other free ports after a clash at the first start."""
        self.port = free_loopback_port()

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the process is alive (frozen counts as alive)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Start the process and wait until it answers; :class:`ServiceError` otherwise."""
        if self.running:
            return
        for attempt in range(PORT_CLASH_RETRIES):
            try:
                self._start_once()
            except ServiceError:
                clash = "address already in use" in self.log_text().lower()
                if not (clash and self._port_chosen and self._starts == 0) or (
                    attempt == PORT_CLASH_RETRIES - 1
                ):
                    raise
                self._choose_new_ports()
            else:
                break
        if self._starts == 0:
            self._after_first_start()
        self._starts += 1

    def _start_once(self) -> None:
        command = self._write_config()
        self._log_file = self.log_path.open("ab")
        self._log_file.write(f"--- start: {' '.join(command)}\n".encode())
        self._log_file.flush()
        self._process = subprocess.Popen(  # noqa: S603 - our own command line, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.directory,
        )
        ServiceProcess._live.add(self)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            return_code = self._process.poll()
            if return_code is not None:
                self._close_log()
                raise ServiceError(
                    f"{self.name} exited with code {return_code} during start-up "
                    f"on {self.host}:{self.port}; log {self.log_path}:\n{self.log_tail()}"
                )
            if self._ready():
                return
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise ServiceError(
                    f"{self.name} did not answer on {self.host}:{self.port} within "
                    f"{self.startup_timeout_s} s; log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process: SIGTERM, then SIGKILL after a grace period; ``kill``: SIGKILL now.

        The port and the data directory are kept, so :meth:`start` brings the same service back.
        """
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self._frozen:
                process.send_signal(signal.SIGCONT)
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=SHUTDOWN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=SHUTDOWN_TIMEOUT_S)
        self._frozen = False
        self._process = None
        ServiceProcess._live.discard(self)
        self._close_log()

    def kill(self) -> None:
        """Kill the process with SIGKILL, as a crash would."""
        self.stop(kill=True)

    def restart(self) -> None:
        """Stop (cleanly) and start again on the same port with the same data."""
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Suspend the process (SIGSTOP): it keeps its port but answers nothing, like a hang."""
        if self._process is None or not self.running:
            raise ServiceError(f"{self.name} is not running; cannot freeze it")
        self._process.send_signal(signal.SIGSTOP)
        self._frozen = True

    def thaw(self) -> None:
        """Resume a frozen process (SIGCONT)."""
        if self._process is not None and self._frozen:
            self._process.send_signal(signal.SIGCONT)
        self._frozen = False

    def close(self) -> None:
        """Stop the process and remove the temporary directory if this object made it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- diagnostics -----------------------------------------------------------------------

    def log_text(self) -> str:
        """Everything the process wrote to stdout/stderr so far (all starts)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = LOG_TAIL_CHARS) -> str:
        """The last ``chars`` characters of the log."""
        return self.log_text()[-chars:]

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"{type(self).__name__}({self.host}:{self.port}, {state}, {self.directory})"

    @classmethod
    def _stop_all(cls) -> None:
        """Last resort at interpreter exit: no server outlives the tests that started it."""
        for service in list(cls._live):
            with contextlib.suppress(Exception):
                service.stop(kill=True)


atexit.register(ServiceProcess._stop_all)


class MosquittoProcess(ServiceProcess):
    """A real Mosquitto 2.0 broker on a loopback port.

    Anonymous clients are allowed unless a ``password_file`` is given; then ``allow_anonymous``
    is false and ``acl_file`` (if given) applies. Persistence is on (in the temporary
    directory), so retained messages and persistent sessions survive :meth:`restart`; MQTT 3.1.1
    and 5 clients are accepted.

    Parameters
    ----------
    password_file, acl_file
        Files in Mosquitto's formats, e.g. from :mod:`pipesentinel.ingest.mosquitto_auth`.
    max_queued_messages
        QoS 1/2 messages queued per client before mosquitto drops.
    autosave_interval_s
        How often the in-memory state is saved [s]; a :meth:`kill` loses what was not saved.
    certfile, keyfile
        PEM server certificate and key: the listener then speaks TLS (``mqtts://``).
    executable, port, directory, startup_timeout_s
        See :class:`ServiceProcess`; ``executable`` defaults to :func:`find_mosquitto`.
    """

    name: ClassVar[str] = "mosquitto"

    def __init__(
        self,
        *,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        max_queued_messages: int = TEST_MAX_QUEUED_MESSAGES,
        autosave_interval_s: int = 1800,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        executable: Path | None = None,
        port: int | None = None,
        directory: Path | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        if executable is None:
            executable = find_mosquitto()
            if executable is None:
                raise ServiceNotInstalledError(
                    "mosquitto is not installed (Debian: apt-get install mosquitto)"
                )
        if acl_file is not None and password_file is None:
            raise ValueError("acl_file needs a password_file: ACLs are per authenticated user")
        self.password_file = password_file
        self.acl_file = acl_file
        self.max_queued_messages = max_queued_messages
        self.autosave_interval_s = autosave_interval_s
        self.certfile = certfile
        self.keyfile = keyfile
        super().__init__(
            executable=executable,
            port=port,
            directory=directory,
            startup_timeout_s=startup_timeout_s,
        )

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>`` (``mqtts://`` with TLS)."""
        scheme = "mqtt" if self.certfile is None else "mqtts"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """The generated ``mosquitto.conf``."""
        return self.directory / "mosquitto.conf"

    def _write_config(self) -> list[str]:
        persistence = self.directory / "persistence"
        persistence.mkdir(exist_ok=True)
        self.config_path.write_text(
            BrokerConfig(
                port=self.port,
                bind_address=self.host,
                allow_anonymous=self.password_file is None,
                password_file=self.password_file,
                acl_file=self.acl_file,
                persistence_dir=persistence,
                max_queued_messages=self.max_queued_messages,
                autosave_interval_s=self.autosave_interval_s,
                max_queued_bytes=0,
                certfile=self.certfile,
                keyfile=self.keyfile,
                log_dest="stderr",
                # Started as root, mosquitto would switch to the "mosquitto" account, which
                # cannot read this private temporary directory: keep the current account.
                user=pwd.getpwuid(os.geteuid()).pw_name,
            ).text()
        )
        return [str(self.executable), "-c", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=PROBE_TIMEOUT_S):
                return True
        except OSError:
            return False


class InfluxdProcess(ServiceProcess):
    """A real InfluxDB 1.x server (``influxd``) on a loopback port.

    The configuration puts the meta, data and WAL directories in the temporary directory, turns
    usage reporting and the ``_internal`` monitor off, fsyncs the WAL on every write, and puts
    the RPC (backup) listener on a second free loopback port instead of 8088.

    Parameters
    ----------
    auth_enabled
        Require HTTP authentication; an admin ``admin_username``/``admin_password`` is created on
        first start.
    admin_username, admin_password
        The admin user when ``auth_enabled``.
    executable, port, directory, startup_timeout_s
        See :class:`ServiceProcess`; ``executable`` defaults to :func:`find_influxd`.
    """

    name: ClassVar[str] = "influxd"

    def __init__(
        self,
        *,
        auth_enabled: bool = False,
        admin_username: str = "admin",
        admin_password: str = "admin-password-for-tests",  # noqa: S107 - a throw-away test server
        executable: Path | None = None,
        port: int | None = None,
        directory: Path | None = None,
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
    ) -> None:
        if executable is None:
            executable = find_influxd()
            if executable is None:
                raise ServiceNotInstalledError(
                    "influxd is not installed (Debian: apt-get install influxdb)"
                )
        self.auth_enabled = auth_enabled
        self.admin_username = admin_username
        self.admin_password = admin_password
        self.rpc_port = free_loopback_port()
        super().__init__(
            executable=executable,
            port=port,
            directory=directory,
            startup_timeout_s=startup_timeout_s,
        )

    def _choose_new_ports(self) -> None:
        super()._choose_new_ports()
        self.rpc_port = free_loopback_port()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        """The generated ``influxdb.conf``."""
        return self.directory / "influxdb.conf"

    def _write_config(self) -> list[str]:
        data = self.directory / "influxdb"
        self.config_path.write_text(
            "\n".join(
                [
                    "reporting-enabled = false",
                    f"bind-address = {_toml_string(f'{self.host}:{self.rpc_port}')}",
                    "[meta]",
                    f"  dir = {_toml_string(data / 'meta')}",
                    "  logging-enabled = false",
                    "[data]",
                    f"  dir = {_toml_string(data / 'data')}",
                    f"  wal-dir = {_toml_string(data / 'wal')}",
                    '  wal-fsync-delay = "0s"',
                    "  query-log-enabled = false",
                    "[monitor]",
                    "  store-enabled = false",
                    "[subscriber]",
                    "  enabled = false",
                    "[http]",
                    "  enabled = true",
                    f"  bind-address = {_toml_string(f'{self.host}:{self.port}')}",
                    f"  auth-enabled = {'true' if self.auth_enabled else 'false'}",
                    "  log-enabled = false",
                    "  pprof-enabled = false",
                    "[logging]",
                    '  level = "warn"',
                    "  suppress-logo = true",
                    "[continuous_queries]",
                    "  enabled = false",
                    "",
                ]
            )
        )
        return [str(self.executable), "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(  # noqa: S310 - http on loopback, built here
                f"{self.url}/ping", timeout=PROBE_TIMEOUT_S
            ) as response:
                return int(response.status) == INFLUX_HTTP_NO_CONTENT
        except (OSError, urllib.error.URLError):
            return False

    def _after_first_start(self) -> None:
        if not self.auth_enabled:
            return
        # InfluxDB 1.x accepts this one statement without credentials while no admin exists.
        statement = (
            f"CREATE USER {influxql_identifier(self.admin_username)} WITH PASSWORD "
            f"{influxql_string(self.admin_password)} WITH ALL PRIVILEGES"
        )
        body = urllib.parse.urlencode({"q": statement}).encode()
        try:
            with urllib.request.urlopen(  # noqa: S310 - http on loopback, built here
                f"{self.url}/query", data=body, timeout=STARTUP_TIMEOUT_S
            ) as response:
                answer = response.read().decode(errors="replace")
        except (OSError, urllib.error.URLError) as error:
            raise ServiceError(f"influxd: creating the admin user failed: {error}") from error
        if '"error"' in answer:
            raise ServiceError(f"influxd: creating the admin user failed: {answer}")
