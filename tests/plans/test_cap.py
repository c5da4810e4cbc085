"""CAP 1.2 public alerts (plans/cap.py): generation, validation, areas."""

import hashlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import xmlschema
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from shapely.geometry import Polygon

from pipesentinel.detection.gases import LelBasis
from pipesentinel.geo import geodetic_to_enu, lon_lat
from pipesentinel.plans.cap import (
    CAP_NAMESPACE,
    CAP_SCHEMA_PATH,
    MAX_HEADLINE_CHARS,
    MAX_POLYGON_VERTICES,
    CapArea,
    CapCertainty,
    CapCircle,
    CapError,
    CapIncident,
    CapMsgType,
    CapReference,
    CapResponseType,
    CapSender,
    CapSeverity,
    CapStatus,
    CapUrgency,
    CapValidationError,
    CapZone,
    ThreatLevel,
    bounded_ring_m,
    cap_alert,
    cap_area,
    cap_area_from_site,
    cap_datetime,
    cap_identifier,
    parse_cap_datetime,
    parse_cap_polygon,
    rate_zone,
    reference_of,
    validate_cap,
)
from pipesentinel.site import Gas
from pipesentinel.site_loader import load_site

REPO = Path(__file__).resolve().parents[2]
WANLI = load_site(REPO / "sites" / "wanli")
NS = {"cap": CAP_NAMESPACE}
CHINA_STANDARD_TIME = timezone(timedelta(hours=8))
SENT = datetime(2026, 12, 3, 16, 5, 7, 250_000, tzinfo=CHINA_STANDARD_TIME)
SENDER = CapSender(
    "pipesentinel@wanli.example",
    "Wanli Subdistrict Emergency Office",
    web="https://wanli.example/alerts",
    contact="+86 000 0000",
)

# CAP 1.2 (OASIS Standard, 1 July 2010), appendix A.2 "Severe Thunderstorm Warning" and A.3
# "Earthquake Report (Update Message)", as reproduced in public CAP libraries' test fixtures
# (whitespace normalised).
SPEC_A2_THUNDERSTORM = """<?xml version = "1.0" encoding = "UTF-8"?>
<alert xmlns = "urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KSTO1055887203</identifier>
  <sender>KSTO@NWS.NOAA.GOV</sender>
  <sent>2003-06-17T14:57:00-07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>SEVERE THUNDERSTORM</event>
    <responseType>Shelter</responseType>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <eventCode>
      <valueName>SAME</valueName>
      <value>SVR</value>
    </eventCode>
    <expires>2003-06-17T16:00:00-07:00</expires>
    <senderName>NATIONAL WEATHER SERVICE SACRAMENTO CA</senderName>
    <headline>SEVERE THUNDERSTORM WARNING</headline>
    <description> AT 254 PM PDT...NATIONAL WEATHER SERVICE DOPPLER RADAR INDICATED A SEVERE
THUNDERSTORM OVER SOUTH CENTRAL ALPINE COUNTY...OR ABOUT 18 MILES SOUTHEAST OF KIRKWOOD...MOVING
SOUTHWEST AT 5 MPH. HAIL...INTENSE RAIN AND STRONG DAMAGING WINDS ARE LIKELY WITH THIS
STORM.</description>
    <instruction>TAKE COVER IN A SUBSTANTIAL SHELTER UNTIL THE STORM PASSES.</instruction>
    <contact>BARUFFALDI/JUSKIE</contact>
    <area>
      <areaDesc>EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA, EXTREME NORTHEASTERN
CALAVERAS COUNTY IN CALIFORNIA, SOUTHWESTERN ALPINE COUNTY IN CALIFORNIA</areaDesc>
      <polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14</polygon>
      <geocode>
        <valueName>SAME</valueName>
        <value>006109</value>
      </geocode>
      <geocode>
        <valueName>SAME</valueName>
        <value>006009</value>
      </geocode>
      <geocode>
        <valueName>SAME</valueName>
        <value>006003</value>
      </geocode>
    </area>
  </info>
</alert>
"""

SPEC_A3_EARTHQUAKE_UPDATE = """<?xml version = "1.0" encoding = "UTF-8"?>
<alert xmlns = "urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>TRI13970876.2</identifier>
  <sender>trinet@caltech.edu</sender>
  <sent>2003-06-11T20:56:00-07:00</sent>
  <status>Actual</status>
  <msgType>Update</msgType>
  <scope>Public</scope>
  <references>trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00</references>
  <info>
    <category>Geo</category>
    <event>Earthquake</event>
    <urgency>Past</urgency>
    <severity>Minor</severity>
    <certainty>Observed</certainty>
    <senderName>Southern California Seismic Network (TriNet) operated
by Caltech and USGS</senderName>
    <headline>EQ 3.4 Imperial County CA</headline>
    <description>A minor earthquake measuring 3.4 on the Richter scale occurred near Brawley,
California at 8:30 PM Pacific Daylight Time on Wednesday, June 11, 2003. (This event has now been
reviewed by a seismologist)</description>
    <web>http://www.trinet.org/scsn/scsn.html</web>
    <parameter>
      <valueName>EventID</valueName>
      <value>13970876</value>
    </parameter>
    <parameter>
      <valueName>Version</valueName>
      <value>1</value>
    </parameter>
    <parameter>
      <valueName>Magnitude</valueName>
      <value>3.4 Ml</value>
    </parameter>
    <parameter>
      <valueName>Depth</valueName>
      <value>11.8 mi.</value>
    </parameter>
    <parameter>
      <valueName>Quality</valueName>
      <value>Excellent</value>
    </parameter>
    <area>
      <areaDesc>1 mi. WSW of Brawley, CA; 11 mi. N of El Centro, CA; 30 mi. E of OCOTILLO
(quarry); 1 mi. N of the Imperial Fault</areaDesc>
      <circle>32.9525,-115.5527 0</circle>
    </area>
  </info>
</alert>
"""


def _ellipse_m(vertex_count: int, *, wobble: float = 0.1) -> np.ndarray:
    angle = np.linspace(0.0, 2.0 * np.pi, vertex_count, endpoint=False)
    radius = 1.0 + wobble * np.sin(7.0 * angle)
    return np.stack(
        [300.0 + 400.0 * radius * np.cos(angle), 200.0 + 150.0 * radius * np.sin(angle)], axis=-1
    )


RED_RING_M = _ellipse_m(48)
YELLOW_RING_M = _ellipse_m(64) * 1.6


def _incident(**changes: object) -> CapIncident:
    values: dict[str, object] = {
        "incident_id": "INC-20261203-001",
        "version": 3,
        "gas": Gas.METHANE,
        "leak_confirmed": True,
        "location_description": "Hetang Road near Wanli Primary School",
        "emission_rate_kg_per_s": 0.8,
        "lel_basis": LelBasis.IEC_60079_20_1,
        "wind_from_deg": 225.0,
    }
    values.update(changes)
    return CapIncident(**values)  # type: ignore[arg-type]


def _zones(red_occupants: int = 120) -> list[CapZone]:
    red = cap_area_from_site(
        "Red zone: Hetang Road between the school and the river",
        WANLI.origin,
        polygons_m=[RED_RING_M],
        circles_m=[((300.0, 200.0), 150.0)],
    )
    yellow = cap_area_from_site("Yellow zone", WANLI.origin, polygons_m=[YELLOW_RING_M])
    return [
        CapZone(ThreatLevel.YELLOW, (yellow,), occupants=340),
        CapZone(ThreatLevel.RED, (red,), occupants=red_occupants),
    ]


def _alert(**changes: object) -> str:
    incident = changes.pop("incident", _incident())
    zones = changes.pop("zones", _zones())
    options: dict[str, object] = {
        "sender": SENDER,
        "sent": SENT,
        "assembly_points": ["Wanli Middle School sports ground, Hetang Road north"],
    }
    options.update(changes)
    return cap_alert(incident, zones, **options)  # type: ignore[arg-type]


def _root(xml: str) -> ET.Element:
    return ET.fromstring(xml.encode())


def _texts(xml: str, path: str) -> list[str]:
    return [element.text or "" for element in _root(xml).iterfind(path, NS)]


EARLIER = CapReference(SENDER.sender_id, "INC-20261203-001.2", SENT - timedelta(minutes=5))


# --------------------------------------------------------------------------------------------
# Schema file


def test_schema_file_is_the_packaged_oasis_file_plus_a_provenance_comment() -> None:
    text = CAP_SCHEMA_PATH.read_text(encoding="utf-8")
    recorded = re.search(r"SHA-256 of that file\s+([0-9a-f]{64})", text)
    assert recorded is not None
    comment = re.search(r"<!--\n  PipeSentinel: provenance.*?-->\n", text, flags=re.DOTALL)
    assert comment is not None
    original = text[: comment.start()] + text[comment.end() :]
    assert hashlib.sha256(original.encode("utf-8")).hexdigest() == recorded.group(1)
    schema = xmlschema.XMLSchema10(str(CAP_SCHEMA_PATH))
    assert schema.target_namespace == CAP_NAMESPACE


# --------------------------------------------------------------------------------------------
# Generated alerts validate


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("alert", _alert),
        ("update", lambda: _alert(msg_type=CapMsgType.UPDATE, references=[EARLIER])),
        ("cancel", lambda: _alert(msg_type=CapMsgType.CANCEL, references=[EARLIER])),
        (
            "cancel without zones",
            lambda: _alert(msg_type=CapMsgType.CANCEL, references=[EARLIER], zones=[]),
        ),
        ("exercise", lambda: _alert(status=CapStatus.EXERCISE, note="Exercise WANLI-2026-04")),
        ("test", lambda: _alert(status=CapStatus.TEST)),
        ("suspected", lambda: _alert(incident=_incident(leak_confirmed=False))),
        ("ignition", lambda: _alert(incident=_incident(ignition_observed=True))),
        (
            "propane, low confidence",
            lambda: _alert(
                incident=_incident(gas=Gas.PROPANE, zones_low_confidence=True, wind_from_deg=None)
            ),
        ),
        ("UTC", lambda: _alert(sent=datetime(2026, 12, 3, 8, 5, tzinfo=UTC))),
    ],
)
def test_generated_alerts_pass_the_oasis_schema_and_the_cap_rules(
    name: str, make: Callable[[], str]
) -> None:
    xml = make()
    # The schema on its own (independent of validate_cap) ...
    xmlschema.XMLSchema10(str(CAP_SCHEMA_PATH)).validate(xml)
    # ... and with the rules the schema cannot express.
    validate_cap(xml)
    root = _root(xml)
    assert root.tag == f"{{{CAP_NAMESPACE}}}alert"
    assert root.findtext("cap:scope", namespaces=NS) == "Public"
    for headline in _texts(xml, "cap:info/cap:headline"):
        assert 0 < len(headline) <= MAX_HEADLINE_CHARS


def test_alert_is_deterministic_and_identified_by_incident_and_version() -> None:
    first, second = _alert(), _alert()
    assert first == second
    assert _texts(first, "cap:identifier") == ["INC-20261203-001.3"]
    assert _texts(first, "cap:incidents") == ["INC-20261203-001"]
    assert cap_identifier("INC-7", 12) == "INC-7.12"
    later = _alert(incident=_incident(version=4))
    assert _texts(later, "cap:identifier") == ["INC-20261203-001.4"]


def test_sent_has_offset_and_no_fractional_seconds() -> None:
    xml = _alert()
    assert _texts(xml, "cap:sent") == ["2026-12-03T16:05:07+08:00"]
    assert _texts(xml, "cap:info/cap:expires") == ["2026-12-03T17:05:07+08:00"] * 2
    assert cap_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05-00:00"
    assert parse_cap_datetime("2026-01-02T03:04:05-00:00") == datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=UTC
    )
    with pytest.raises(CapError, match="time zone"):
        cap_datetime(datetime(2026, 1, 2, 3, 4, 5))


def test_red_zone_block_comes_first_with_evacuate_and_instructions() -> None:
    xml = _alert()
    infos = _root(xml).findall("cap:info", NS)
    assert [
        info.findtext("cap:parameter[cap:valueName='threat_level']/cap:value", namespaces=NS)
        for info in infos
    ] == ["red", "yellow"]
    red = infos[0]
    assert [e.text for e in red.findall("cap:responseType", NS)] == ["Evacuate"]
    assert (
        red.findtext("cap:urgency", namespaces=NS),
        red.findtext("cap:severity", namespaces=NS),
        red.findtext("cap:certainty", namespaces=NS),
    ) == ("Immediate", "Severe", "Observed")
    instruction = red.findtext("cap:instruction", namespaces=NS) or ""
    assert "Leave the red zone now" in instruction
    assert "Wanli Middle School sports ground" in instruction
    assert "no smoking" in instruction
    # Wind from the south-west (225 deg): across it is SE or NW; downwind is north-east.
    assert "towards the south-east or the north-west" in instruction
    assert "never downwind (towards the north-east)" in instruction
    headline = red.findtext("cap:headline", namespaces=NS) or ""
    assert headline.startswith("EVACUATE NOW")
    assert red.findtext("cap:senderName", namespaces=NS) == SENDER.name
    assert red.findtext("cap:web", namespaces=NS) == SENDER.web


def test_exercise_and_test_are_marked_everywhere_a_person_reads() -> None:
    exercise = _alert(status=CapStatus.EXERCISE, note="Exercise WANLI-2026-04")
    assert _texts(exercise, "cap:status") == ["Exercise"]
    assert _texts(exercise, "cap:note") == ["Exercise WANLI-2026-04"]
    assert all(h.startswith("EXERCISE: ") for h in _texts(exercise, "cap:info/cap:headline"))
    assert all(
        d.startswith("THIS IS AN EXERCISE") for d in _texts(exercise, "cap:info/cap:description")
    )
    test = _alert(status=CapStatus.TEST)
    assert all(h.startswith("TEST: ") for h in _texts(test, "cap:info/cap:headline"))
    with pytest.raises(CapError, match="Exercise needs a note"):
        _alert(status=CapStatus.EXERCISE)


def test_update_and_cancel_reference_the_earlier_alert() -> None:
    first = _alert()
    reference = reference_of(first)
    assert reference == CapReference(
        SENDER.sender_id, "INC-20261203-001.3", SENT.replace(microsecond=0)
    )
    update = _alert(
        incident=_incident(version=4), msg_type=CapMsgType.UPDATE, references=[reference]
    )
    assert _texts(update, "cap:references") == [
        "pipesentinel@wanli.example,INC-20261203-001.3,2026-12-03T16:05:07+08:00"
    ]
    cancel = _alert(
        incident=_incident(version=5),
        msg_type=CapMsgType.CANCEL,
        references=[reference, reference_of(update)],
    )
    assert len(_texts(cancel, "cap:references")[0].split()) == 2
    assert _texts(cancel, "cap:info/cap:responseType") == ["AllClear"]
    assert _texts(cancel, "cap:info/cap:urgency") == ["Past"]
    # The all-clear covers every area that was alerted.
    assert len(_root(cancel).findall("cap:info/cap:area", NS)) == 2
    with pytest.raises(CapError, match="must reference"):
        _alert(msg_type=CapMsgType.UPDATE)


def test_long_location_is_shortened_to_keep_the_headline_short() -> None:
    xml = _alert(incident=_incident(location_description="Hetang Road " * 30))
    for headline in _texts(xml, "cap:info/cap:headline"):
        assert len(headline) <= MAX_HEADLINE_CHARS
        assert "…" in headline
        assert headline.endswith("zone")


@pytest.mark.parametrize(
    ("threat_level", "confirmed", "occupants", "ignition", "expected"),
    [
        (ThreatLevel.RED, True, 5, True, ("Immediate", "Extreme", "Observed", ("Evacuate",))),
        (ThreatLevel.RED, True, 5, False, ("Immediate", "Severe", "Observed", ("Evacuate",))),
        (ThreatLevel.RED, True, 0, False, ("Immediate", "Moderate", "Observed", ("Avoid",))),
        (
            ThreatLevel.YELLOW,
            True,
            50,
            False,
            ("Expected", "Moderate", "Observed", ("Prepare", "Avoid")),
        ),
        (
            ThreatLevel.RED,
            False,
            50,
            False,
            ("Expected", "Moderate", "Possible", ("Prepare", "Avoid")),
        ),
        (ThreatLevel.YELLOW, False, 50, False, ("Expected", "Minor", "Possible", ("Prepare",))),
    ],
)
def test_rating_follows_the_documented_mapping(
    threat_level: ThreatLevel,
    confirmed: bool,
    occupants: int,
    ignition: bool,
    expected: tuple[str, str, str, tuple[str, ...]],
) -> None:
    rating = rate_zone(
        threat_level=threat_level,
        leak_confirmed=confirmed,
        occupants=occupants,
        ignition_observed=ignition,
    )
    assert (rating.urgency, rating.severity, rating.certainty) == expected[:3]
    assert tuple(rating.response_types) == expected[3]
    assert rating.to_json_dict()["rationale"]


def test_rating_never_softens_as_the_situation_worsens() -> None:
    urgency = list(reversed(CapUrgency))  # Unknown < Past < Future < Expected < Immediate
    severity = list(reversed(CapSeverity))
    certainty = list(reversed(CapCertainty))

    def rank(
        level: ThreatLevel, confirmed: bool, occupants: int, ignition: bool
    ) -> tuple[int, int, int]:
        rating = rate_zone(
            threat_level=level,
            leak_confirmed=confirmed,
            occupants=occupants,
            ignition_observed=ignition,
        )
        return (
            urgency.index(rating.urgency),
            severity.index(rating.severity),
            certainty.index(rating.certainty),
        )

    for level in ThreatLevel:
        for occupants in (0, 10):
            suspected = rank(level, False, occupants, False)
            confirmed = rank(level, True, occupants, False)
            ignited = rank(level, True, occupants, True)
            assert all(a <= b for a, b in zip(suspected, confirmed, strict=True))
            assert all(a <= b for a, b in zip(confirmed, ignited, strict=True))
    assert rank(ThreatLevel.YELLOW, True, 10, False) <= rank(ThreatLevel.RED, True, 10, False)


def test_duty_officer_response_types_override_the_mapping() -> None:
    zones = [
        CapZone(
            ThreatLevel.YELLOW,
            _zones()[0].areas,
            occupants=340,
            response_types=(CapResponseType.SHELTER,),
        )
    ]
    xml = _alert(zones=zones)
    assert _texts(xml, "cap:info/cap:responseType") == ["Shelter"]
    assert _texts(xml, "cap:info/cap:headline")[0].startswith("STAY INDOORS")


# --------------------------------------------------------------------------------------------
# Areas


def test_site_polygons_round_trip_as_lat_lon_pairs() -> None:
    xml = _alert()
    polygons = _texts(xml, "cap:info[1]/cap:area/cap:polygon")
    assert len(polygons) == 1
    parsed = parse_cap_polygon(polygons[0])  # (lon, lat)
    assert np.array_equal(parsed[0], parsed[-1])
    expected = lon_lat(RED_RING_M, WANLI.origin)
    # 1e-6 deg of rounding on 6 decimals: the written value is within half of it.
    assert_allclose(parsed[:-1], expected, atol=5.0e-7, rtol=0.0)
    # Latitude first in the text: the site is at about 34.75 N, 113.55 E.
    first_lat, first_lon = (float(v) for v in polygons[0].split()[0].split(","))
    assert abs(first_lat - WANLI.origin.latitude_deg) < 0.1
    assert abs(first_lon - WANLI.origin.longitude_deg) < 0.1
    circle = _texts(xml, "cap:info[1]/cap:area/cap:circle")
    centre_lon, centre_lat = lon_lat(np.array([300.0, 200.0]), WANLI.origin)
    assert circle == [f"{centre_lat:.6f},{centre_lon:.6f} 0.150"]


def test_lon_lat_multipolygon_becomes_several_polygon_elements() -> None:
    square = np.array([[121.0, 25.0], [121.01, 25.0], [121.01, 25.02], [121.0, 25.02]])
    second = square + np.array([0.05, 0.0])
    closed = np.concatenate([second, second[:1]])  # closed input (GeoJSON style) is accepted
    area = cap_area("Two parts", polygons_lon_lat_deg=[square, closed])
    zone = CapZone(ThreatLevel.RED, (area,), occupants=3)
    xml = _alert(zones=[zone])
    polygons = _texts(xml, "cap:info/cap:area/cap:polygon")
    assert len(polygons) == 2
    for text, ring in zip(polygons, (square, second), strict=True):
        assert_allclose(parse_cap_polygon(text)[:-1], ring, atol=5.0e-7, rtol=0.0)
    assert [text.split()[0] for text in polygons] == [
        "25.000000,121.000000",
        "25.000000,121.050000",
    ]
    assert area.to_json_dict()["polygons_lon_lat_deg"][0][0] == [121.0, 25.0]


def test_circle_radius_is_rounded_up_and_altitude_written_in_feet() -> None:
    area = cap_area(
        "Isolation circle",
        circles=[CapCircle(25.0, 121.0, 100.2)],
        altitude_msl_m=100.0,
        ceiling_msl_m=200.0,
    )
    xml = _alert(zones=[CapZone(ThreatLevel.RED, (area,), occupants=1)])
    assert _texts(xml, "cap:info/cap:area/cap:circle") == ["25.000000,121.000000 0.101"]
    # 100 m / 0.3048 m per ft = 328.08 ft; 200 m = 656.17 ft.
    assert _texts(xml, "cap:info/cap:area/cap:altitude") == ["328"]
    assert _texts(xml, "cap:info/cap:area/cap:ceiling") == ["656"]


def test_huge_polygon_is_bounded_without_shrinking() -> None:
    ring_m = _ellipse_m(2000, wobble=0.2)
    area = cap_area_from_site("Large", WANLI.origin, polygons_m=[ring_m])
    assert area.simplified_polygon_count == 1
    written = parse_cap_polygon(
        _texts(
            _alert(zones=[CapZone(ThreatLevel.RED, (area,), occupants=1)]),
            "cap:info/cap:area/cap:polygon",
        )[0]
    )
    assert len(written) - 1 <= MAX_POLYGON_VERTICES
    east, north, _ = geodetic_to_enu(written[:, 1], written[:, 0], 0.0, WANLI.origin)
    bounded = Polygon(np.stack([east, north], axis=-1))
    original = Polygon(ring_m)
    # Covers the original up to the 1e-6 deg rounding of the text (< 0.11 m).
    assert bounded.buffer(0.12).covers(original)
    assert bounded.area < 1.1 * original.area


def test_huge_lon_lat_polygon_is_bounded_too() -> None:
    ring_m = _ellipse_m(500)
    ring_deg = lon_lat(ring_m, WANLI.origin)
    area = cap_area("Large", polygons_lon_lat_deg=[ring_deg], max_polygon_vertices=20)
    assert area.simplified_polygon_count == 1
    ring = np.array(area.polygons_lon_lat_deg[0])
    assert len(ring) <= 20
    east, north, _ = geodetic_to_enu(ring[:, 1], ring[:, 0], 0.0, WANLI.origin)
    assert Polygon(np.stack([east, north], axis=-1)).buffer(1e-3).covers(Polygon(ring_m))


@settings(max_examples=60, deadline=None)
@given(
    radii=st.lists(st.floats(10.0, 1000.0), min_size=5, max_size=400),
    max_vertices=st.integers(4, 40),
)
def test_bounded_ring_covers_and_fits(radii: list[float], max_vertices: int) -> None:
    angle = np.linspace(0.0, 2.0 * np.pi, len(radii), endpoint=False)
    ring = np.stack([np.cos(angle), np.sin(angle)], axis=-1) * np.array(radii)[:, None]
    bounded = bounded_ring_m(ring, max_vertices)
    assert len(bounded) <= max_vertices
    assert Polygon(bounded).buffer(1e-6).covers(Polygon(ring).buffer(0))
    if len(ring) <= max_vertices:
        assert np.array_equal(bounded, ring)


@pytest.mark.parametrize(
    ("ring", "message"),
    [
        ([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], "3 distinct"),
        ([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], "no area"),
        ([[0.0, 0.0], [1.0, np.nan], [2.0, 0.0]], "finite"),
        ([[0.0, 95.0], [1.0, 95.0], [1.0, 96.0]], "latitude"),
        ([[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 1.0]], "crosses itself"),
    ],
)
def test_bad_input_rings_are_refused(ring: list[list[float]], message: str) -> None:
    with pytest.raises(CapError, match=message):
        cap_area("bad", polygons_lon_lat_deg=[np.array(ring)])


def test_bad_alert_inputs_are_refused() -> None:
    with pytest.raises(CapError, match="at least one zone"):
        _alert(zones=[])
    with pytest.raises(CapError, match="no area"):
        _alert(zones=[CapZone(ThreatLevel.RED, (), occupants=1)])
    with pytest.raises(CapError, match="commas"):
        _alert(incident=_incident(incident_id="INC 1"))
    with pytest.raises(CapError, match="ceiling needs an altitude"):
        cap_area("x", circles=[CapCircle(0.0, 0.0, 1.0)], ceiling_msl_m=10.0)
    with pytest.raises(CapError, match="radius"):
        cap_area("x", circles=[CapCircle(0.0, 0.0, -1.0)])
    assert isinstance(cap_area("x", circles=[CapCircle(0.0, 0.0, 1.0)]), CapArea)


# --------------------------------------------------------------------------------------------
# Validation rejects broken alerts, naming the element


def _replace_first(old: str, new: str) -> Callable[[str], str]:
    def mutate(xml: str) -> str:
        assert old in xml, old
        return xml.replace(old, new, 1)

    return mutate


def _regex(pattern: str, new: str) -> Callable[[str], str]:
    def mutate(xml: str) -> str:
        changed, count = re.subn(pattern, new, xml, count=1)
        assert count == 1, pattern
        return changed

    return mutate


def _open_polygon(xml: str) -> str:
    root = _root(xml)
    polygon = root.find("cap:info/cap:area/cap:polygon", NS)
    assert polygon is not None
    assert polygon.text
    polygon.text = " ".join(polygon.text.split()[:-1])
    return ET.tostring(root, encoding="unicode", default_namespace=CAP_NAMESPACE)


def _short_polygon(xml: str) -> str:
    return _regex(
        r"<polygon>[^<]*</polygon>", "<polygon>25.0,121.0 25.1,121.0 25.0,121.0</polygon>"
    )(xml)


BROKEN = [
    ("missing sender", _regex(r"\s*<sender>[^<]*</sender>", ""), "/alert", "sender"),
    ("missing info event", _regex(r"\s*<event>[^<]*</event>", ""), "/alert/info[1]", "event"),
    (
        "bad status",
        _replace_first("<status>Actual</status>", "<status>Real</status>"),
        "/alert/status",
        "Actual",
    ),
    (
        "bad urgency",
        _replace_first("<urgency>Immediate</urgency>", "<urgency>Now</urgency>"),
        "/alert/info[1]/urgency",
        "Immediate",
    ),
    (
        "bad responseType",
        _replace_first("<responseType>Evacuate</responseType>", "<responseType>Run</responseType>"),
        "/alert/info[1]/responseType",
        "Evacuate",
    ),
    (
        "sent in Z",
        _regex(r"<sent>[^<]*</sent>", "<sent>2026-12-03T08:05:07Z</sent>"),
        "/alert/sent",
        "pattern",
    ),
    (
        "sent with fraction",
        _regex(r"<sent>[^<]*</sent>", "<sent>2026-12-03T16:05:07.25+08:00</sent>"),
        "/alert/sent",
        "pattern",
    ),
    (
        "sent without zone",
        _regex(r"<sent>[^<]*</sent>", "<sent>2026-12-03T16:05:07</sent>"),
        "/alert/sent",
        "pattern",
    ),
    (
        "sent on an impossible day",
        _regex(r"<sent>[^<]*</sent>", "<sent>2026-02-30T16:05:07+08:00</sent>"),
        "/alert/sent",
        "out of range",
    ),
    (
        "UTC written +00:00",
        _regex(r"<sent>[^<]*</sent>", "<sent>2026-12-03T08:05:07+00:00</sent>"),
        "/alert/sent",
        "-00:00",
    ),
    (
        "elements out of order",
        _regex(r"(<status>Actual</status>)\s*(<msgType>Alert</msgType>)", r"\2\1"),
        "/alert",
        "cap:status",
    ),
    ("open polygon", _open_polygon, "/alert/info[1]/area[1]/polygon[1]", "not closed"),
    ("polygon of 3 pairs", _short_polygon, "/alert/info[1]/area[1]/polygon[1]", ">= 4"),
    (
        "polygon latitude out of range",
        _regex(
            r"<polygon>[^<]*</polygon>",
            "<polygon>95.0,121.0 95.0,121.1 95.1,121.1 95.0,121.0</polygon>",
        ),
        "/alert/info[1]/area[1]/polygon[1]",
        "latitude",
    ),
    (
        "polygon pair malformed",
        _regex(r"<polygon>[\d.]+,[\d.]+ ", "<polygon>34.75;113.55 "),
        "/alert/info[1]/area[1]/polygon[1]",
        "lat,lon",
    ),
    (
        "circle longitude out of range",
        _regex(r"<circle>([\d.]+),[\d.]+", r"<circle>\1,190.0"),
        "/alert/info[1]/area[1]/circle[1]",
        "longitude",
    ),
    (
        "circle without radius",
        _regex(r"<circle>([\d.]+,[\d.]+) [\d.]+</circle>", r"<circle>\1</circle>"),
        "/alert/info[1]/area[1]/circle[1]",
        "radius",
    ),
    (
        "expires before sent",
        _regex(r"<expires>[^<]*</expires>", "<expires>2026-12-03T16:00:00+08:00</expires>"),
        "/alert/info[1]/expires[1]",
        "not after sent",
    ),
    (
        "identifier with a space",
        _regex(r"<identifier>[^<]*</identifier>", "<identifier>INC 1</identifier>"),
        "/alert/identifier",
        "spaces",
    ),
    (
        "update without references",
        _replace_first("<msgType>Alert</msgType>", "<msgType>Update</msgType>"),
        "/alert/references",
        "msgType Update must reference",
    ),
    (
        "references malformed",
        _regex(
            r"(\s*)<incidents>",
            r"\1<references>sender,2026-12-03T16:00:00+08:00</references>"
            r"\1<incidents>",
        ),
        "/alert/references[1]",
        "sender,identifier,sent",
    ),
    ("not XML", lambda xml: xml[: len(xml) // 2], "/", "well-formed"),
]


@pytest.mark.parametrize(("name", "mutate", "path", "reason"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_alert_is_rejected_with_path_and_reason(
    name: str, mutate: Callable[[str], str], path: str, reason: str
) -> None:
    good = _alert()
    validate_cap(good)
    broken = mutate(good)
    assert broken != good
    with pytest.raises(CapValidationError) as caught:
        validate_cap(broken)
    assert caught.value.path == path, str(caught.value)
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: ")


def test_entities_are_refused() -> None:
    xml = _alert()
    bomb = xml.replace(
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<?xml version="1.0"?>\n<!DOCTYPE alert [<!ENTITY lol "lol">]>',
    ).replace("<areaDesc>", "<areaDesc>&lol;", 1)
    with pytest.raises(CapValidationError):
        validate_cap(bomb)


# --------------------------------------------------------------------------------------------
# Examples of the CAP 1.2 specification (appendix A)


def test_specification_examples_validate() -> None:
    validate_cap(SPEC_A2_THUNDERSTORM)
    validate_cap(SPEC_A3_EARTHQUAKE_UPDATE)
    polygon = parse_cap_polygon(
        _root(SPEC_A2_THUNDERSTORM).findtext("cap:info/cap:area/cap:polygon", namespaces=NS) or ""
    )
    assert_allclose(polygon[0], [-120.14, 38.47])
    reference = reference_of(SPEC_A3_EARTHQUAKE_UPDATE)
    assert reference.identifier == "TRI13970876.2"
    assert reference.sent.utcoffset() == timedelta(hours=-7)


def test_specification_example_with_its_polygon_opened_is_rejected() -> None:
    broken = SPEC_A2_THUNDERSTORM.replace(" 38.47,-120.14</polygon>", "</polygon>")
    with pytest.raises(CapValidationError, match="not closed") as caught:
        validate_cap(broken)
    assert caught.value.path == "/alert/info[1]/area[1]/polygon[1]"
