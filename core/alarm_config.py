"""Gas alarm set points of a site: ``sites/<name>/alarms.toml`` into SI fractions of the LEL.

The file is optional: without it every detector gets the built-in defaults below. With it, values
are layered, later wins::

    built-in defaults < [defaults] < [defaults.<gas>]
                      < [zones.<zone>] < [zones.<zone>.<gas>]
                      < [devices.<id>] < [devices.<id>.<gas>]

A table without a gas applies to every gas. Keys carry their unit (``low_percent_lel = 20``,
``on_delay_s = 1``, ``rate_of_rise_percent_lel_per_min = 10``); percentages and per-minute rates
are converted to SI fractions [1] and per-second rates [s-1] once, here. An optional top-level
``lel_basis = "IEC 60079-20-1"`` states which LEL the percentages refer to; the threshold core
refuses to run on another basis (a %LEL set point means a different mole fraction on another
basis). The format is documented in ``docs/alarms.md`` ("Set points").

Validation collects every problem and raises one :class:`AlarmConfigValidationError`, one line
per problem naming the file and the field, e.g.::

    sites/wanli/alarms.toml: zones.P9-S1: unknown zone 'P9-S1' (zones of site 'wanli': ...)
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from pipesentinel.detection.gases import LelBasis
from pipesentinel.site import Gas, GasDetector, Site

__all__ = [
    "ALARM_FILE_NAME",
    "AlarmConfig",
    "AlarmConfigIssue",
    "AlarmConfigValidationError",
    "GasSetpoints",
    "load_alarm_config",
    "parse_alarm_config",
]

ALARM_FILE_NAME: Final = "alarms.toml"

PERCENT: Final = 100.0  # percent per unit fraction (definition)
SECONDS_PER_MINUTE: Final = 60.0  # definition

# ---- Built-in defaults (each cited or justified; docs/alarms.md repeats the reasoning)
#
# LOW / HIGH: 20 %LEL first alarm and 40 %LEL second alarm, the usual pair of fixed fire-and-gas
# practice for flammable gases ("Alarm Range 1 typically 20 % LEL ... Alarm Range 2 typically
# 40 % LEL"). IEC 60079-29-2:2015 (selection, installation, use and maintenance of flammable gas
# detectors) leaves the numbers to the user, asking for levels as low as practicable above the
# normal background while avoiding false alarms; at 0.5 % FS noise on a 0-5 %vol range (0.57 %LEL
# methane, 1.5 %LEL propane, 1 sigma) 20 %LEL is more than 13 sigma above zero for either gas.
DEFAULT_LOW_PERCENT_LEL: Final = 20.0
DEFAULT_HIGH_PERCENT_LEL: Final = 40.0
# Deadband (hysteresis): an active LOW/HIGH condition clears only below set point - deadband.
# 2 %LEL: above the +-1 % of range short-term stability of the reference detector class (Sewerin
# EX-TEC PM 400 manual, appendix 9.2.1, i.e. about 1.1 %LEL methane), so noise at the set point
# does not toggle the condition. A design choice.
DEFAULT_DEADBAND_PERCENT_LEL: Final = 2.0
# On-delay 1 s: the condition must be seen on two consecutive samples (the first sample at t0 and
# a later one with t - t0 >= 1 s) for every sample period above 1 s, i.e. 2 samples for the 2 s
# pipeline detectors and the 5 s underground detectors, robust to millisecond timestamp jitter.
# One isolated sample (a spike) never raises an alarm; a confirmed gas reaches the alarm one
# sample period later, small against the detectors' t90 of 10-25 s. A design choice.
DEFAULT_ON_DELAY_S: Final = 1.0
# Off-delay 10 s: the condition must be absent for 10 s (6 samples at 2 s, 3 at 5 s) before the
# alarm clears, so a plume that meanders across a detector does not make the alarm chatter.
DEFAULT_OFF_DELAY_S: Final = 10.0
# Rate of rise: least-squares slope over a 60 s window above 10 %LEL per minute. With 0.5 % FS
# white noise the slope of 31 samples at 2 s has a standard deviation of 1.5 %LEL min-1 / 3.3
# (propane / methane), so 10 %LEL min-1 is > 6 sigma: no chatter on a quiet day (see the tests),
# while a leak that would reach LOW (20 %LEL) within 2 minutes is announced early. Design choice.
DEFAULT_RATE_OF_RISE_PERCENT_LEL_PER_MIN: Final = 10.0
DEFAULT_RATE_OF_RISE_DEADBAND_PERCENT_LEL_PER_MIN: Final = 2.0
DEFAULT_RATE_OF_RISE_WINDOW_S: Final = 60.0
# White noise of the detectors, 1 sigma, as a percent of full scale: the +-1 % of range
# short-term stability of the Sewerin EX-TEC PM 400 (operating manual, appendix 9.2.1) read as
# 2 sigma, as in pipesentinel.hardware.gas_sensor. Sets the "elevated" floor of the localisation.
DEFAULT_NOISE_STD_PERCENT_FULL_SCALE: Final = 0.5


_PERCENT_TO_FRACTION = 1.0 / PERCENT
_PER_MINUTE_PERCENT = 1.0 / (PERCENT * SECONDS_PER_MINUTE)


@dataclass(frozen=True)
class GasSetpoints:
    """Resolved set points of one gas at one detector, in SI.

    Attributes
    ----------
    low_fraction_lel
        LOW alarm set point, fraction of the LEL [1].
    high_fraction_lel
        HIGH alarm set point, fraction of the LEL [1].
    deadband_fraction_lel
        An active LOW/HIGH condition clears below set point minus this [1].
    on_delay_s
        How long a condition must hold before its alarm becomes active [s].
    off_delay_s
        How long a condition must be absent before its alarm clears [s].
    rate_of_rise_fraction_lel_per_s
        RATE_OF_RISE set point on the least-squares slope [s-1] (fraction of the LEL per second).
    rate_of_rise_deadband_fraction_lel_per_s
        An active rate-of-rise condition clears below set point minus this [s-1].
    rate_of_rise_window_s
        Length of the slope window (and of the recent-mean window) [s].
    noise_std_fraction_of_full_scale
        White noise of the detector, one standard deviation, fraction of its full scale [1].
    """

    low_fraction_lel: float = DEFAULT_LOW_PERCENT_LEL * _PERCENT_TO_FRACTION
    high_fraction_lel: float = DEFAULT_HIGH_PERCENT_LEL * _PERCENT_TO_FRACTION
    deadband_fraction_lel: float = DEFAULT_DEADBAND_PERCENT_LEL * _PERCENT_TO_FRACTION
    on_delay_s: float = DEFAULT_ON_DELAY_S
    off_delay_s: float = DEFAULT_OFF_DELAY_S
    rate_of_rise_fraction_lel_per_s: float = (
        DEFAULT_RATE_OF_RISE_PERCENT_LEL_PER_MIN * _PER_MINUTE_PERCENT
    )
    rate_of_rise_deadband_fraction_lel_per_s: float = (
        DEFAULT_RATE_OF_RISE_DEADBAND_PERCENT_LEL_PER_MIN * _PER_MINUTE_PERCENT
    )
    rate_of_rise_window_s: float = DEFAULT_RATE_OF_RISE_WINDOW_S
    noise_std_fraction_of_full_scale: float = (
        DEFAULT_NOISE_STD_PERCENT_FULL_SCALE * _PERCENT_TO_FRACTION
    )


@dataclass(frozen=True)
class _Key:
    """One key of the file: the field it sets, its factor to SI, and its allowed range."""

    field: str
    to_si: float
    minimum: float = 0.0
    minimum_open: bool = False  # the minimum itself is excluded
    maximum: float = math.inf


KEYS: Final[Mapping[str, _Key]] = MappingProxyType(
    {
        "low_percent_lel": _Key(
            "low_fraction_lel", _PERCENT_TO_FRACTION, minimum_open=True, maximum=100.0
        ),
        "high_percent_lel": _Key(
            "high_fraction_lel", _PERCENT_TO_FRACTION, minimum_open=True, maximum=100.0
        ),
        "deadband_percent_lel": _Key("deadband_fraction_lel", _PERCENT_TO_FRACTION, maximum=100.0),
        "on_delay_s": _Key("on_delay_s", 1.0),
        "off_delay_s": _Key("off_delay_s", 1.0),
        "rate_of_rise_percent_lel_per_min": _Key(
            "rate_of_rise_fraction_lel_per_s", _PER_MINUTE_PERCENT, minimum_open=True
        ),
        "rate_of_rise_deadband_percent_lel_per_min": _Key(
            "rate_of_rise_deadband_fraction_lel_per_s", _PER_MINUTE_PERCENT
        ),
        "rate_of_rise_window_s": _Key("rate_of_rise_window_s", 1.0, minimum_open=True),
        "noise_std_percent_full_scale": _Key(
            "noise_std_fraction_of_full_scale", _PERCENT_TO_FRACTION, maximum=100.0
        ),
    }
)
_FIELD_KEYS = {key.field: name for name, key in KEYS.items()}
_SECTIONS = ("defaults", "zones", "devices")
_TOP_LEVEL_KEYS = frozenset({"lel_basis", *_SECTIONS})
_GAS_NAMES = {gas.value: gas for gas in Gas}


@dataclass(frozen=True)
class AlarmConfigIssue:
    """One problem in an alarms file: the field path (``zones.P1-S2.methane.low_percent_lel``)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class AlarmConfigValidationError(ValueError):
    """An alarms file is invalid; ``issues`` lists every problem found, not just the first.

    ``str(error)`` has a summary line, then one line per problem: ``<file>: <path>: <message>``.
    """

    def __init__(self, source: Path, issues: Sequence[AlarmConfigIssue]) -> None:
        self.source = source
        self.issues: tuple[AlarmConfigIssue, ...] = tuple(issues)
        count = len(self.issues)
        summary = f"{source}: {count} problem{'s' if count != 1 else ''} in the alarms file"
        super().__init__("\n".join([summary, *self.messages]))

    @property
    def messages(self) -> tuple[str, ...]:
        """One line per problem: ``<file>: <field path>: <message>``."""
        return tuple(f"{self.source}: {issue}" for issue in self.issues)


@dataclass(frozen=True)
class AlarmConfig:
    """The resolved set points of every gas detector of one site.

    Attributes
    ----------
    site_id
        The site the set points were resolved for.
    source
        The file read, or ``None`` when the site has none (built-in defaults).
    lel_basis
        The LEL basis the file states its percentages on, or ``None`` if it does not say.
    setpoints
        Detector id -> gas -> :class:`GasSetpoints`, for every detector and every gas.
    """

    site_id: str
    source: Path | None
    lel_basis: LelBasis | None
    setpoints: Mapping[str, Mapping[Gas, GasSetpoints]]

    @classmethod
    def defaults_for(cls, site: Site) -> AlarmConfig:
        """Built-in defaults for every detector of ``site`` (a site without an alarms file)."""
        default = GasSetpoints()
        table = {detector.id: dict.fromkeys(Gas, default) for detector in site.gas_detectors}
        return cls(site.id, None, None, _freeze(table))

    def for_detector(self, detector_id: str, gas: Gas) -> GasSetpoints:
        """Set points of ``gas`` at detector ``detector_id``; ``KeyError`` naming it otherwise."""
        try:
            return self.setpoints[detector_id][Gas(gas)]
        except KeyError:
            raise KeyError(
                f"no set points for detector {detector_id!r} gas {gas!r} in the alarm "
                f"configuration of site {self.site_id!r}"
            ) from None


def _freeze(
    table: Mapping[str, Mapping[Gas, GasSetpoints]],
) -> Mapping[str, Mapping[Gas, GasSetpoints]]:
    return MappingProxyType({key: MappingProxyType(dict(value)) for key, value in table.items()})


# --------------------------------------------------------------------------------------------
# Reading


_Layer = dict[str, tuple[float, str]]  # field -> (SI value, path of the key that set it)


class _Reader:
    """Collects the layers of the file and every problem found while reading them."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.issues: list[AlarmConfigIssue] = []
        # (section, name or "", gas or None) -> layer
        self.layers: dict[tuple[str, str, Gas | None], _Layer] = {}

    def error(self, path: str, message: str) -> None:
        issue = AlarmConfigIssue(path, message)
        if issue not in self.issues:
            self.issues.append(issue)

    def read(self, document: Mapping[str, Any]) -> LelBasis | None:
        for key in document:
            if key not in _TOP_LEVEL_KEYS:
                self.error(key, f"unknown key; known: {', '.join(sorted(_TOP_LEVEL_KEYS))}")
        basis = self.read_basis(document.get("lel_basis"))
        defaults = document.get("defaults", {})
        if self.is_table("defaults", defaults):
            self.read_gas_tables("defaults", "", defaults)
        zones = set(self.site.zones)
        devices = {detector.id for detector in self.site.gas_detectors}
        for section, known in (("zones", zones), ("devices", devices)):
            entries = document.get(section, {})
            if not self.is_table(section, entries):
                continue
            kind = "zone" if section == "zones" else "gas detector"
            for name, table in entries.items():
                path = f"{section}.{name}"
                if name not in known:
                    listed = ", ".join(sorted(known)) or "none"
                    self.error(path, f"unknown {kind} {name!r} (site {self.site.id!r}: {listed})")
                elif self.is_table(path, table):
                    self.read_gas_tables(section, name, table)
        return basis

    def read_basis(self, value: object) -> LelBasis | None:
        if value is None:
            return None
        try:
            if not isinstance(value, str):
                raise ValueError(value)  # reported below with the value
            return LelBasis(value)
        except ValueError:
            known = ", ".join(repr(member.value) for member in LelBasis)
            self.error("lel_basis", f"unknown LEL basis {value!r}; known: {known}")
            return None

    def is_table(self, path: str, value: object) -> bool:
        if isinstance(value, Mapping):
            return True
        self.error(path, f"expected a table, got {type(value).__name__} {value!r:.40}")
        return False

    def read_gas_tables(self, section: str, name: str, table: Mapping[str, Any]) -> None:
        base = f"{section}.{name}" if name else section
        common: _Layer = {}
        for key, value in table.items():
            path = f"{base}.{key}"
            if key in _GAS_NAMES:
                if self.is_table(path, value):
                    self.layers[(section, name, _GAS_NAMES[key])] = self.read_values(path, value)
            elif key in KEYS:
                self.read_value(common, path, key, value)
            else:
                self.error(path, _unknown_key_message(key))
        self.layers[(section, name, None)] = common

    def read_values(self, base: str, table: Mapping[str, Any]) -> _Layer:
        layer: _Layer = {}
        for key, value in table.items():
            path = f"{base}.{key}"
            if key in KEYS:
                self.read_value(layer, path, key, value)
            else:
                self.error(path, _unknown_key_message(key, gas_table=True))
        return layer

    def read_value(self, layer: _Layer, path: str, key: str, value: object) -> None:
        spec = KEYS[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, f"expected a number, got {type(value).__name__} {value!r:.40}")
            return
        number = float(value)
        low_ok = number > spec.minimum if spec.minimum_open else number >= spec.minimum
        if not math.isfinite(number) or not low_ok or number > spec.maximum:
            low = "(" if spec.minimum_open else "["
            high = f"{spec.maximum:g}]" if math.isfinite(spec.maximum) else "inf)"
            self.error(path, f"{number:g} is outside {low}{spec.minimum:g}, {high}")
            return
        layer[spec.field] = (number * spec.to_si, path)

    def resolve(self, detector: GasDetector, gas: Gas) -> GasSetpoints:
        """Apply the layers for ``detector`` and ``gas``; check the combination."""
        resolved: _Layer = {
            item.name: (getattr(GasSetpoints(), item.name), "built-in default")
            for item in fields(GasSetpoints)
        }
        for section, name in (("defaults", ""), ("zones", detector.zone), ("devices", detector.id)):
            for layer_gas in (None, gas):
                resolved.update(self.layers.get((section, name, layer_gas), {}))
        values = {field: value for field, (value, _) in resolved.items()}

        def origin(field: str) -> str:
            path = resolved[field][1]
            return _FIELD_KEYS[field] if path == "built-in default" else path

        def check(ok: bool, field: str, other: str, relation: str) -> None:
            if not ok:
                # Name the detector only when a zone or device table is involved: a bad default
                # is then reported once, not once per detector.
                specific = any(
                    resolved[name][1].startswith(("zones.", "devices.")) for name in (field, other)
                )
                where = f"detector {detector.id!r} {gas.value}" if specific else gas.value
                self.error(
                    origin(field),
                    f"{where}: {_FIELD_KEYS[field]} = {_shown(field, values[field])} must be "
                    f"{relation} {_FIELD_KEYS[other]} = {_shown(other, values[other])} "
                    f"(set by {origin(other)})",
                )

        check(
            values["low_fraction_lel"] < values["high_fraction_lel"],
            "low_fraction_lel",
            "high_fraction_lel",
            "below",
        )
        check(
            values["deadband_fraction_lel"] < values["low_fraction_lel"],
            "deadband_fraction_lel",
            "low_fraction_lel",
            "below",
        )
        check(
            values["rate_of_rise_deadband_fraction_lel_per_s"]
            < values["rate_of_rise_fraction_lel_per_s"],
            "rate_of_rise_deadband_fraction_lel_per_s",
            "rate_of_rise_fraction_lel_per_s",
            "below",
        )
        return GasSetpoints(**values)


def _shown(field: str, value: float) -> str:
    """A resolved SI value back in the file's unit, for messages."""
    return f"{value / KEYS[_FIELD_KEYS[field]].to_si:g}"


def _unknown_key_message(key: str, *, gas_table: bool = False) -> str:
    known = sorted(KEYS) if gas_table else sorted([*KEYS, *_GAS_NAMES])
    return f"unknown key {key!r}; known: {', '.join(known)}"


# --------------------------------------------------------------------------------------------
# Public entry points


def load_alarm_config(site_dir: Path | str, site: Site) -> AlarmConfig:
    """Read and validate ``site_dir/alarms.toml`` for ``site``; defaults if there is no file.

    Parameters
    ----------
    site_dir : Path or str
        The site's folder (``sites/<name>``); a path to the TOML file itself is accepted too.
    site : Site
        The loaded site: zone and device names are checked against it.

    Returns
    -------
    AlarmConfig
        Resolved set points of every gas detector and gas.

    Raises
    ------
    AlarmConfigValidationError
        Anything wrong in the file; ``issues`` lists every problem found.
    """
    site_dir = Path(site_dir)
    source = site_dir if site_dir.suffix == ".toml" else site_dir / ALARM_FILE_NAME
    if site_dir.suffix != ".toml" and not source.exists():
        return AlarmConfig.defaults_for(site)
    try:
        content = source.read_bytes()
    except OSError as error:
        raise AlarmConfigValidationError(
            source, [AlarmConfigIssue("<file>", f"cannot read: {error}")]
        ) from error
    return parse_alarm_config(content, source=source, site=site)


def parse_alarm_config(content: bytes | str, *, source: Path, site: Site) -> AlarmConfig:
    """Validate the text of an alarms file; ``source`` names it in error messages.

    See :func:`load_alarm_config` for the parameters and exceptions.
    """
    try:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        document = tomllib.loads(text)
    except UnicodeDecodeError as error:
        raise AlarmConfigValidationError(
            source, [AlarmConfigIssue("<file>", f"not UTF-8: {error}")]
        ) from error
    except tomllib.TOMLDecodeError as error:
        raise AlarmConfigValidationError(
            source, [AlarmConfigIssue("<toml>", f"syntax error: {error}")]
        ) from error
    reader = _Reader(site)
    basis = reader.read(document)
    table = {
        detector.id: {gas: reader.resolve(detector, gas) for gas in Gas}
        for detector in site.gas_detectors
    }
    if reader.issues:
        raise AlarmConfigValidationError(source, reader.issues)
    return AlarmConfig(site.id, source, basis, _freeze(table))
