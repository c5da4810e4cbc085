"""The ``pipesentinel`` command: the one place that parses arguments and prints.

Subcommands:

* ``demo`` - embedded broker, simulated devices, ingestion, SQLite, live status;
* ``broker-config`` - Mosquitto config, password file and ACL generated from the site model;
* ``ingest`` - the storing ingest service and the detection process (``--role``) against the
  configured broker and store (production; ``pipesentinel.ingest.workers``);
* ``devices`` - the simulated devices of a scenario against the configured broker (testing);
* ``replay`` - a recording through the live pipeline's stages, with a report;
* ``simulate`` - a scenario end to end on a simulated clock (detection and emergency response),
  or a what-if leak; writes report.json, zones.geojson, alert.cap.xml and map.png;
* ``plan`` - the duty officer's plan decisions on an incident (show, confirm, override, release);
* ``check-site`` - load and validate a site and its scenarios.

Settings come from ``PIPESENTINEL_*`` variables and ``pipesentinel.toml``
(:mod:`pipesentinel.settings`); options here override them for one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from pydantic import ValidationError

from pipesentinel import __version__
from pipesentinel.api.auth import Role as ApiRole
from pipesentinel.api.auth import mint_token
from pipesentinel.demo import (
    DEFAULT_DURATION_S,
    DEFAULT_SCENARIO,
    DEFAULT_SPEED,
    resolve_scenario,
    run_demo,
)
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.hardware.fleet import DeviceFleet, ScenarioClock, run_scenario
from pipesentinel.hardware.scenario import ScenarioError, load_scenario, scenario_paths
from pipesentinel.hardware.validation import main as validation_main
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.mosquitto_auth import (
    BrokerConfig,
    MqttUser,
    write_auth_files,
    write_mosquitto_conf,
)
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.replay import REPORT_NAME, ReplayError, replay, summary_lines
from pipesentinel.ingest.response_service import response_context
from pipesentinel.ingest.simulate import SimulationError, simulate_scenario, simulate_what_if
from pipesentinel.ingest.simulate import summary_lines as simulation_summary_lines
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.workers import Role, ServiceProcess, run_role
from pipesentinel.plans.cap import CapError, CapStatus
from pipesentinel.plans.library import PlanValidationError, Severity, load_plan_library
from pipesentinel.plans.response import LeakEstimate, respond
from pipesentinel.serve import serving, uvicorn_server
from pipesentinel.settings import Settings
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import SiteValidationError, load_site

EXIT_OK = 0
INGEST_ROLE_BOTH = "both"
EXIT_BAD_INPUT = 2
NOTIFY_TIMEOUT_S = 10.0


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, object] = {}
    if getattr(args, "site", None) is not None:
        overrides["site_dir"] = Path(args.site)
    if getattr(args, "data_dir", None) is not None:
        data = Path(args.data_dir)
        overrides["storage"] = {
            "sqlite_path": data / "telemetry.sqlite3",
            "frames_dir": data / "frames",
        }
        overrides["ingest"] = {"dead_letter_path": data / "dead_letter.sqlite3"}
        overrides["alarms"] = {
            "journal_path": data / "alarm_journal.sqlite3",
            "incidents_path": data / "incidents.sqlite3",
        }
        overrides["notifications"] = {"log_path": data / "notifications.sqlite3"}
        overrides["response"] = {
            "responses_path": data / "responses.sqlite3",
            "plan_decisions_path": data / "plan_decisions.sqlite3",
        }
    return Settings(**overrides)  # type: ignore[arg-type]


def _demo(args: argparse.Namespace) -> int:
    settings = _settings(args)
    run_demo(
        settings,
        scenario_name=args.scenario,
        duration_s=args.duration,
        speed=args.speed,
        live=not args.no_live,
    )
    return EXIT_OK


def _broker_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.broker.username is None or settings.broker.password is None:
        print(
            "broker-config: the service account needs PIPESENTINEL_BROKER__USERNAME and "
            "PIPESENTINEL_BROKER__PASSWORD (or [broker] username/password in pipesentinel.toml)",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    site = load_site(settings.site_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    password_file, acl_file = out / "passwd", out / "acl"
    write_auth_files(
        site,
        device_secret=settings.device_secret.get_secret_value(),
        service_user=MqttUser(
            settings.broker.username, settings.broker.password.get_secret_value()
        ),
        password_file=password_file,
        acl_file=acl_file,
    )
    config = BrokerConfig(
        port=args.port,
        bind_address=args.bind,
        password_file=password_file.resolve(),
        acl_file=acl_file.resolve(),
        persistence_dir=(out / "data").resolve(),
    )
    write_mosquitto_conf(out / "mosquitto.conf", config)
    users = len(site.devices) + 1
    print(f"wrote {out / 'mosquitto.conf'}, {password_file} ({users} users), {acl_file}")
    print(f"run: mosquitto -c {out / 'mosquitto.conf'}")
    return EXIT_OK


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal API
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass


def _ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    site = load_site(settings.site_dir)
    roles = [Role(args.role)] if args.role != INGEST_ROLE_BOTH else [Role.STORAGE, Role.DETECTION]
    with contextlib.ExitStack() as stack:
        # Every role but the last in a child process of its own; the last one in this process.
        # Storage is the child: it runs at settings.ingest.storage_nice, detection first.
        for role in roles[:-1]:
            stack.enter_context(ServiceProcess(role, settings=settings, site=site))
        counters = stack.enter_context(run_role(roles[-1], settings=settings, site=site))
        print(
            f"{' and '.join(role.value for role in roles)} of site {site.id} from "
            f"{settings.broker.url}; Ctrl-C stops"
        )
        _wait_for_signal()
        final = counters()
    print("stopped: " + ", ".join(f"{name} {count}" for name, count in final.items()))
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    site = load_site(settings.site_dir)
    host = args.host if args.host is not None else settings.api.host
    port = args.port if args.port is not None else settings.api.port
    with serving(settings, site) as running:
        server = uvicorn_server(running.app, host=host, port=port)
        print(
            f"site {site.id} from {settings.broker.url}; API and console on "
            f"http://{host}:{port}/ (OpenAPI: /docs); Ctrl-C stops"
        )
        server.run()  # until SIGINT/SIGTERM (uvicorn's own handlers)
        final = running.storage.counters() if running.storage.alive() else {}
    print("stopped" + ("" if not final else ": " + ", ".join(f"{k} {v}" for k, v in final.items())))
    return EXIT_OK


def _token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(settings.api.tokens_path)
    token = mint_token(path, name=args.name, role=ApiRole(args.role))
    print(f"token for {args.name} ({args.role}), shown once; only its hash is kept in {path}:")
    print(token)
    return EXIT_OK


def _devices(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings.broker.url is None:
        print("devices: set PIPESENTINEL_BROKER__URL to the broker's mqtt:// URL", file=sys.stderr)
        return EXIT_BAD_INPUT
    site = load_site(settings.site_dir)
    scenario = load_scenario(resolve_scenario(settings.site_dir, args.scenario), site)
    speed = math.inf if args.speed <= 0 else args.speed
    clock = ScenarioClock(origin_epoch_s=time.time(), speed=speed)
    simulation = SiteSimulation(
        site, scenario, frames=not args.no_frames, frame_period_factor=max(min(speed, 1e6), 1.0)
    )
    stop = threading.Event()
    with DeviceFleet(
        site,
        broker_url=settings.broker.url,
        device_secret=settings.device_secret.get_secret_value(),
    ) as fleet:
        print(
            f"{len(site.devices)} devices of {site.id} playing {scenario.name} at x{args.speed:g}"
        )
        try:
            run_scenario(simulation, fleet, clock, stop=stop, until_s=args.duration)
        except KeyboardInterrupt:
            stop.set()
        stats = fleet.stats()
    print(f"published {sum(stats.published_by_kind.values())} messages {stats.published_by_kind}")
    return EXIT_OK


def _check_site(args: argparse.Namespace) -> int:
    settings = _settings(args)
    site = load_site(settings.site_dir)
    print(
        f"site {site.id}: {len(site.pipelines)} pipelines "
        f"({', '.join(f'{p.id} {p.length_m:.0f} m' for p in site.pipelines)}), "
        f"{len(site.buildings)} buildings, {len(site.gas_detectors)} gas detectors, "
        f"{len(site.wind_stations)} wind stations, {len(site.cameras)} cameras"
    )
    for path in scenario_paths(settings.site_dir):
        scenario = load_scenario(path, site)
        print(f"  scenario {path.name}: {scenario.name}, {scenario.duration_s:.0f} s")
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    site = load_site(settings.site_dir)
    if args.no_frames:
        settings = settings.model_copy(
            update={"detection": settings.detection.model_copy(update={"camera_analytics": False})}
        )
    report = replay(args.recording, out_dir=Path(args.out), settings=settings, site=site)
    for line in summary_lines(report):
        print(line)
    print(f"report: {Path(args.out) / REPORT_NAME}")
    return EXIT_OK


def _simulate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    site = load_site(settings.site_dir)
    context = response_context(settings, site, cap_status=CapStatus.EXERCISE)
    out = Path(args.out)
    if args.what_if:
        if args.scenario is not None:
            raise ValueError("give a scenario or --what-if, not both")
        missing = [
            name
            for name in ("rate", "wind_speed", "wind_from", "stability")
            if getattr(args, name) is None
        ]
        if missing or (args.pipeline is None) == (args.position is None):
            raise ValueError(
                "a what-if needs --rate, --wind-speed, --wind-from, --stability and either "
                "--pipeline with --chainage or --position E,N"
                + (
                    f" (missing: {', '.join('--' + m.replace('_', '-') for m in missing)})"
                    if missing
                    else ""
                )
            )
        position = None
        if args.position is not None:
            east, north = (float(v) for v in args.position.split(","))
            position = (east, north)
        estimate = LeakEstimate.what_if(
            site,
            gas=Gas(args.gas),
            rate_kg_per_s=args.rate,
            wind_speed_m_per_s=args.wind_speed,
            wind_from_deg=args.wind_from,
            stability_class=StabilityClass[args.stability.upper()],
            lel_basis=settings.lel_basis,
            pipeline_id=args.pipeline,
            chainage_m=args.chainage,
            position_m=position,
            sigma_theta_deg=args.sigma_theta,
            rate_factor=args.rate_factor,
        )
        when = args.time or datetime.datetime.now(tz=context.time_zone).isoformat()
        moment = datetime.datetime.fromisoformat(when)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=context.time_zone)
        response = respond(
            context,
            incident_id="WHATIF",
            incident_version=1,
            time_s=moment.timestamp(),
            severity=Severity(args.severity),
            estimate=estimate,
            underground_zone_ids=tuple(args.underground_zone or ()),
        )
        report = simulate_what_if(response, out_dir=out, context=context)
    else:
        if args.scenario is None:
            raise ValueError("give a scenario (name or .toml path) or --what-if")
        scenario = load_scenario(resolve_scenario(settings.site_dir, args.scenario), site)
        settings = settings.model_copy(
            update={
                "detection": settings.detection.model_copy(
                    update={"camera_analytics": args.frames, "expect_frames": args.frames}
                )
            }
        )
        report = simulate_scenario(
            scenario,
            out_dir=out,
            settings=settings,
            site=site,
            context=context,
            frames=args.frames,
            until_s=args.duration,
            broker=None if args.broker == "none" else args.broker,
        )
    for line in simulation_summary_lines(report):
        print(line)
    print(f"outputs in {out}: {', '.join(report['outputs'])}")
    return EXIT_OK


def _plan(args: argparse.Namespace) -> int:
    """The duty officer's plan decisions on an incident: show, confirm, override, release."""
    settings = _settings(args)
    site = load_site(settings.site_dir)
    with SqlitePlanDecisionLog(Path(settings.response.plan_decisions_path)) as decisions:
        now_s = time.time()
        incident = args.incident
        outcome = None
        if args.action == "confirm":
            current = decisions.current(incident)
            if current is None or current.plan_id is None or current.plan_version is None:
                raise ValueError(f"incident {incident!r} has no plan in effect to confirm")
            outcome = decisions.confirm(
                incident_id=incident,
                plan_id=current.plan_id,
                plan_version=current.plan_version,
                actor=args.user,
                time_s=now_s,
                reason=args.reason,
            )
        elif args.action == "override":
            if not args.plan or not args.reason:
                raise ValueError("an override needs --plan and --reason")
            library = load_plan_library(Path(settings.site_dir) / "plans", site)
            chosen = library.plan(args.plan)
            outcome = decisions.override(
                incident_id=incident,
                plan_id=chosen.id,
                plan_version=chosen.version,
                actor=args.user,
                reason=args.reason,
                time_s=now_s,
            )
        elif args.action == "release":
            if not args.reason:
                raise ValueError("a release needs --reason")
            outcome = decisions.release(
                incident_id=incident, actor=args.user, reason=args.reason, time_s=now_s
            )
        for decision in decisions.decisions(incident):
            print(
                f"{decision.sequence:4d} {decision.kind.value:12s} {decision.plan_id or '-':8s} "
                f"by {decision.actor}: {(decision.reason or '')[:90]}"
            )
        current = decisions.current(incident)
        if current is None:
            print(f"incident {incident}: no plan decision yet")
        else:
            print(f"in effect: {json.dumps(current.to_json_dict(), sort_keys=True)}")
    if outcome is not None:
        _notify_plan(settings, site, outcome.change_event(include_unchanged=True))
    return EXIT_OK


def _notify_plan(settings: Settings, site: Site, event: dict[str, object] | None) -> None:
    """Tell the plan decision like an alarm (MQTT retained, webhooks), when a broker is set."""
    if event is None:
        return
    if settings.broker.url is None and not settings.notifications.webhook_urls:
        print("not published: no broker or webhook configured")
        return
    with Notifier(
        settings=settings.notifications, site_id=site.id, broker=settings.broker
    ) as notifier:
        notifier.notify_plan(event)
        if not notifier.wait_idle(NOTIFY_TIMEOUT_S):
            print(f"not confirmed delivered within {NOTIFY_TIMEOUT_S:.0f} s (see the log)")


def _validate_localisation(args: argparse.Namespace) -> int:
    return validation_main(args.arguments)


def _add_simulate_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    simulate = commands.add_parser(
        "simulate",
        help="a scenario end to end on a simulated clock, or a what-if leak (docs/simulate.md)",
    )
    simulate.add_argument("scenario", nargs="?", help="scenario name or .toml path")
    simulate.add_argument("--out", required=True, help="directory for report.json, zones, alert")
    simulate.add_argument("--site", help="site directory")
    simulate.add_argument("--duration", type=float, help="stop at this scenario time [s]")
    simulate.add_argument(
        "--frames", action="store_true", help="render camera frames (slower; thermal analytics)"
    )
    simulate.add_argument(
        "--broker",
        default="embedded",
        help="the broker the device messages go through: embedded (default), mqtt://host:port "
        "(anonymous), or none (handed over directly)",
    )
    simulate.add_argument("--what-if", action="store_true", help="a hypothetical leak, no devices")
    simulate.add_argument("--pipeline", help="what-if: pipeline id")
    simulate.add_argument("--chainage", type=float, help="what-if: chainage on it [m]")
    simulate.add_argument("--position", help="what-if: E,N in site metres instead of a pipeline")
    simulate.add_argument("--gas", default=Gas.METHANE.value, choices=[g.value for g in Gas])
    simulate.add_argument("--rate", type=float, help="what-if: release rate of the gas [kg/s]")
    simulate.add_argument(
        "--rate-factor", type=float, default=1.0, help="what-if: rate range x/÷ this factor"
    )
    simulate.add_argument("--wind-speed", type=float, help="what-if: wind speed at 10 m [m/s]")
    simulate.add_argument("--wind-from", type=float, help="what-if: direction it blows from [deg]")
    simulate.add_argument("--stability", help="what-if: Pasquill-Gifford class A-F")
    simulate.add_argument("--sigma-theta", type=float, help="what-if: wind direction sd [deg]")
    simulate.add_argument(
        "--severity", default=Severity.CONFIRMED.value, choices=[s.value for s in Severity]
    )
    simulate.add_argument(
        "--underground-zone", action="append", help="what-if: underground zone reading gas"
    )
    simulate.add_argument("--time", help="what-if: local time, ISO 8601 (default: now)")
    simulate.set_defaults(handler=_simulate)


def _add_plan_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    plan = commands.add_parser(
        "plan", help="the duty officer's plan decisions on an incident (docs/plans.md)"
    )
    plan.add_argument("action", choices=["show", "confirm", "override", "release"])
    plan.add_argument("incident", help="incident id")
    plan.add_argument("--user", default="duty-officer", help="who decides (journaled)")
    plan.add_argument("--plan", help="override: the plan id to put in effect")
    plan.add_argument("--reason", help="why (required for override and release)")
    plan.add_argument("--site", help="site directory")
    plan.set_defaults(handler=_plan)


def _add_serve_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser(
        "serve", help="ingest, detection, response and the HTTP API (external broker; docs/api.md)"
    )
    serve.add_argument("--site", help="site directory")
    serve.add_argument("--host", help="bind address (default: settings.api.host)")
    serve.add_argument("--port", type=int, help="port (default: settings.api.port)")
    serve.set_defaults(handler=_serve)

    token = commands.add_parser("token", help="API bearer tokens (docs/api.md)")
    token.add_argument("action", choices=["mint"], help="mint: a new token for a name")
    token.add_argument("--name", required=True, help="who holds it (one token per name)")
    token.add_argument("--role", required=True, choices=[role.value for role in ApiRole])
    token.set_defaults(handler=_token)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``pipesentinel`` command."""
    parser = argparse.ArgumentParser(prog="pipesentinel", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"pipesentinel {__version__}")
    parser.add_argument("--log-level", default="WARNING", help="logging level (default WARNING)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the whole chain on embedded defaults")
    demo.add_argument("--scenario", default=DEFAULT_SCENARIO, help="scenario name or .toml path")
    demo.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="scenario seconds")
    demo.add_argument("--speed", type=float, default=DEFAULT_SPEED, help="scenario s per wall s")
    demo.add_argument("--site", help="site directory (default: settings.site_dir)")
    demo.add_argument("--data-dir", default="var/demo", help="where the demo keeps its data")
    demo.add_argument("--no-live", action="store_true", help="no live screen (logs and summary)")
    demo.set_defaults(handler=_demo)

    broker = commands.add_parser("broker-config", help="Mosquitto config, passwords and ACL")
    broker.add_argument("--out", required=True, help="directory to write into")
    broker.add_argument("--port", type=int, default=1883)
    broker.add_argument("--bind", default="127.0.0.1", help="listener address")
    broker.add_argument("--site", help="site directory")
    broker.set_defaults(handler=_broker_config)

    ingest = commands.add_parser(
        "ingest", help="run ingestion, detection and notifications (external broker)"
    )
    ingest.add_argument("--site", help="site directory")
    ingest.add_argument(
        "--role",
        choices=[INGEST_ROLE_BOTH, *(role.value for role in Role)],
        default=INGEST_ROLE_BOTH,
        help="both (default): storage here and detection in a child process; or one of them "
        "alone (e.g. one systemd unit each)",
    )
    ingest.set_defaults(handler=_ingest)

    _add_serve_parsers(commands)

    devices = commands.add_parser("devices", help="simulated devices against an external broker")
    devices.add_argument("--scenario", default=DEFAULT_SCENARIO)
    devices.add_argument("--duration", type=float, default=None, help="scenario seconds")
    devices.add_argument("--speed", type=float, default=1.0, help="0: as fast as possible")
    devices.add_argument("--no-frames", action="store_true", help="no camera images")
    devices.add_argument("--site", help="site directory")
    devices.set_defaults(handler=_devices)

    replayer = commands.add_parser(
        "replay", help="feed a recording (JSON lines) through the live pipeline, write a report"
    )
    replayer.add_argument("recording", help="recording file (settings.ingest.record_path)")
    replayer.add_argument("--out", required=True, help="directory for report.json and databases")
    replayer.add_argument("--site", help="site directory")
    replayer.add_argument(
        "--no-frames", action="store_true", help="the recording has no camera frames"
    )
    replayer.set_defaults(handler=_replay)

    _add_simulate_parser(commands)

    _add_plan_parser(commands)

    validate = commands.add_parser(
        "validate-localisation",
        help="score leak localisation on simulated scenarios (docs/validation.md)",
    )
    validate.add_argument("arguments", nargs=argparse.REMAINDER, help="--runs N --out FILE ...")
    validate.set_defaults(handler=_validate_localisation)

    check = commands.add_parser("check-site", help="validate a site and its scenarios")
    check.add_argument("--site", help="site directory")
    check.set_defaults(handler=_check_site)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pipesentinel`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.handler(args)
    except (
        SiteValidationError,
        ScenarioError,
        ValidationError,
        ValueError,
        FileNotFoundError,
        ReplayError,
        SimulationError,
        PlanValidationError,
        StorageError,
        CapError,
        KeyError,
    ) as error:
        print(f"pipesentinel {args.command}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return code


if __name__ == "__main__":
    raise SystemExit(main())
