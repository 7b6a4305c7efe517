"""Database commands of `tracker` on SQLite and PostgreSQL.

Each test gets a fresh, migrated database (the `database_url` fixture). Pings are in January,
when Europe/London (the default time zone) is UTC, unless they are relative to now.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import MetaData, delete, func, select, update

from tracker.accounts.users import authenticate, token_user
from tracker.cli import main
from tracker.dosage.partitions import partition_names
from tracker.foundation import settings
from tracker.foundation.database import make_engine, schema_is_current, session_factory
from tracker.foundation.models import (
    ApiToken,
    Assignment,
    AuditEvent,
    DailyDosage,
    Device,
    Officer,
    PingRow,
    User,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_GEOFENCES = REPO_ROOT / "geofences" / "leicestershire_demo.geojson"
# LE01 "Clock Tower and Haymarket" is lon [-1.13442, -1.1322] x lat [52.6365, 52.63785];
# LE02 "Gallowtree Gate" is lon [-1.1322, -1.12998] x lat [52.6338, 52.63515].
IN_LE01 = (52.637, -1.1333)
IN_LE02 = (52.6345, -1.1311)
PASSWORD = "a long enough password"


@pytest.fixture(autouse=True)
def no_tracker_settings(monkeypatch):
    """Run every command on the defaults, whatever TRACKER_ settings the shell has."""
    for setting in settings.SETTINGS:
        monkeypatch.delenv(setting.name, raising=False)


def run(*args: str, input: str | None = None, env: dict | None = None) -> Result:
    """Run one command in-process; any exception but click's own exit is a traceback."""
    result = CliRunner().invoke(main, [str(a) for a in args], input=input, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result


def ok(*args: str, **kwargs) -> Result:
    """Run a command that must succeed."""
    result = run(*args, **kwargs)
    assert result.exit_code == 0, result.output
    return result


def count(db, model) -> int:
    with db() as session:
        return session.scalar(select(func.count()).select_from(model))


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def minute_pings(device: str, start: datetime, minutes: int, where=IN_LE01) -> list[dict]:
    """Pings once a minute from `start` for `minutes` minutes (minutes + 1 pings)."""
    return [
        {
            "device_id": device,
            "timestamp": iso(start + timedelta(minutes=i)),
            "lat": where[0],
            "lon": where[1],
        }
        for i in range(minutes + 1)
    ]


def csv_text(pings: list[dict]) -> str:
    lines = ["device_id,timestamp,lat,lon"]
    lines += [f"{p['device_id']},{p['timestamp']},{p['lat']},{p['lon']}" for p in pings]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def report(database_url: str, *extra: str) -> list[dict]:
    return json.loads(ok("report", "--format", "json", "--db", database_url, *extra).stdout)


@pytest.fixture
def with_hot_spots(database_url):
    """The migrated database with the demo hot spots loaded."""
    result = ok("geofences", "load", DEMO_GEOFENCES, "--db", database_url)
    assert result.stdout.startswith("loaded 25 hot spots")
    return database_url


# --- init ----------------------------------------------------------------------------------------


@pytest.fixture
def empty_database_url(database_url):
    """The fresh database with every table dropped, as before `init`."""
    engine = make_engine(database_url)
    with engine.connect() as connection:
        partitions = partition_names(connection)  # go with their table
    tables = MetaData()
    tables.reflect(engine, only=lambda name, _: name not in partitions)
    tables.drop_all(engine)
    assert not schema_is_current(engine)
    engine.dispose()
    return database_url


def test_init_creates_the_schema_and_is_idempotent(empty_database_url, tmp_path):
    first = ok("init", "--db", empty_database_url)
    assert first.stdout.startswith("database ready: ")
    engine = make_engine(empty_database_url)
    assert schema_is_current(engine)
    devices = write(
        tmp_path / "devices.csv",
        "device_id,officer_id,officer_name,starts,ends\n"
        "radio-1,PC101,Alice Smith,2024-01-01T00:00:00Z,\n",
    )
    ok("devices", "load", devices, "--db", empty_database_url)

    again = ok("init", "--db", empty_database_url)

    assert again.stdout == first.stdout
    assert schema_is_current(engine)
    assert count(session_factory(engine), Assignment) == 1  # data kept
    engine.dispose()


@pytest.mark.parametrize(
    "command",
    [["report"], ["dead-letters"], ["recompute"], ["users", "list"], ["purge", "--days", "5"]],
)
def test_commands_on_an_uninitialised_database_say_to_run_init(empty_database_url, command):
    result = run(*command, "--db", empty_database_url)

    assert result.exit_code == 1
    assert "run `python -m tracker init` first" in result.stderr
    assert "Traceback" not in result.output


def test_a_new_sqlite_file_says_to_run_init(tmp_path):
    url = f"sqlite:///{tmp_path / 'instance' / 'new.db'}"

    result = run("report", "--db", url)

    assert result.exit_code == 1
    assert (
        result.stderr == "Error: the database schema is missing or old: "
        "run `python -m tracker init` first\n"
    )
    assert result.stdout == ""


# --- devices load --------------------------------------------------------------------------------

DEVICES_CSV = """device_id,officer_id,officer_name,starts,ends,label
radio-1,PC101,Alice Smith,2024-01-01T00:00:00Z,2024-02-01T00:00:00Z,Radio one
radio-1,PC102,Bob Jones,2024-02-01T00:00:00+00:00,,Radio one
radio-2,PC103,Carol White,2024-01-01T09:00:00+01:00,,
"""
RADIO_1_BEFORE = [
    {
        "officer_id": "PC101",
        "starts": "2024-01-01T00:00:00+00:00",
        "ends": "2024-02-01T00:00:00+00:00",
    },
    {"officer_id": "PC102", "starts": "2024-02-01T00:00:00+00:00", "ends": None},
]
# radio-1 changes hands on 15 January instead; radio-2 is not in the file.
CHANGED_CSV = """device_id,officer_id,officer_name,starts,ends
radio-1,PC101,,2024-01-01T00:00:00Z,2024-01-15T00:00:00Z
radio-1,PC104,Dan Brown,2024-01-15T00:00:00Z,
"""
RADIO_1_AFTER = [
    {
        "officer_id": "PC101",
        "starts": "2024-01-01T00:00:00+00:00",
        "ends": "2024-01-15T00:00:00+00:00",
    },
    {"officer_id": "PC104", "starts": "2024-01-15T00:00:00+00:00", "ends": None},
]


def assignments(db) -> dict[str, list[tuple]]:
    with db() as session:
        rows = session.scalars(
            select(Assignment).order_by(Assignment.device_id, Assignment.starts)
        ).all()
    history: dict[str, list[tuple]] = {}
    for a in rows:
        history.setdefault(a.device_id, []).append((a.officer_id, a.starts, a.ends))
    return history


def assignment_events(db) -> list[AuditEvent]:
    with db() as session:
        return session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "device.assignments")
            .order_by(AuditEvent.id)
        ).all()


def test_devices_load_stores_assignments_over_time(database_url, db, tmp_path):
    result = ok(
        "devices", "load", write(tmp_path / "devices.csv", DEVICES_CSV), "--db", database_url
    )

    assert result.stdout == "loaded 3 assignments for 2 devices\n"
    jan1, feb1 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC)
    assert assignments(db) == {
        "radio-1": [("PC101", jan1, feb1), ("PC102", feb1, None)],
        "radio-2": [("PC103", datetime(2024, 1, 1, 8, tzinfo=UTC), None)],  # +01:00 -> UTC
    }
    with db() as session:
        assert session.get(Officer, "PC102").name == "Bob Jones"
        assert session.get(Device, "radio-1").label == "Radio one"
    events = assignment_events(db)
    assert [(e.subject, e.actor, e.before) for e in events] == [
        ("radio-1", "cli", {"assignments": []}),
        ("radio-2", "cli", {"assignments": []}),
    ]
    assert events[0].after == {"assignments": RADIO_1_BEFORE}


def test_devices_load_again_replaces_a_devices_history_and_audits_it(database_url, db, tmp_path):
    ok("devices", "load", write(tmp_path / "devices.csv", DEVICES_CSV), "--db", database_url)
    radio_2 = assignments(db)["radio-2"]
    events_before = len(assignment_events(db))

    ok("devices", "load", write(tmp_path / "changed.csv", CHANGED_CSV), "--db", database_url)

    jan1, jan15 = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 15, tzinfo=UTC)
    history = assignments(db)
    assert history["radio-1"] == [("PC101", jan1, jan15), ("PC104", jan15, None)]
    assert history["radio-2"] == radio_2  # not in the file: untouched
    new_events = assignment_events(db)[events_before:]
    assert len(new_events) == 1
    assert new_events[0].subject == "radio-1"
    assert new_events[0].before == {"assignments": RADIO_1_BEFORE}
    assert new_events[0].after == {"assignments": RADIO_1_AFTER}
    with db() as session:
        assert session.get(Officer, "PC101").name == "Alice Smith"  # a blank name keeps it


def test_devices_load_of_an_unchanged_history_writes_no_audit_event(database_url, db, tmp_path):
    path = write(tmp_path / "devices.csv", DEVICES_CSV)
    ok("devices", "load", path, "--db", database_url)
    events = len(assignment_events(db))

    ok("devices", "load", path, "--db", database_url)

    assert len(assignment_events(db)) == events
    assert sum(len(h) for h in assignments(db).values()) == 3


BAD_DEVICES_CSV = """device_id,officer_id,officer_name,starts,ends
radio-1,PC109,Good Line,2024-03-01T00:00:00Z,
radio-3,,No Officer,2024-01-01T00:00:00Z,
radio-4,PC104,Naive Time,2024-01-01T08:00:00,
radio-5,PC105,Backwards,2024-01-10T00:00:00Z,2024-01-09T00:00:00Z
radio-6,PC106,First,2024-01-01T00:00:00Z,2024-01-20T00:00:00Z
radio-6,PC107,Second,2024-01-10T00:00:00Z,
"""


def test_a_bad_devices_file_is_rejected_whole_naming_every_bad_line(database_url, db, tmp_path):
    ok("devices", "load", write(tmp_path / "devices.csv", DEVICES_CSV), "--db", database_url)
    before = assignments(db)
    officers, events = count(db, Officer), len(assignment_events(db))
    path = write(tmp_path / "bad.csv", BAD_DEVICES_CSV)

    result = run("devices", "load", path, "--db", database_url)

    assert result.exit_code == 1
    assert result.stdout == ""
    errors = result.stderr.splitlines()
    assert errors[0] == "Error: nothing loaded:"
    assert errors[1:] == [
        f"{path}: line 3: missing officer_id",
        f"{path}: line 4: starts '2024-01-01T08:00:00' has no UTC offset and is ambiguous; "
        "add 'Z' or '+01:00'",
        f"{path}: line 5: ends is not after starts",
        f"{path}: line 7: assignment of radio-6 overlaps the one on line 6",
    ]
    assert assignments(db) == before  # not even the good line 2 (radio-1) was loaded
    assert count(db, Officer) == officers
    assert len(assignment_events(db)) == events
    with db() as session:
        assert session.scalars(select(Device.id).order_by(Device.id)).all() == [
            "radio-1",
            "radio-2",
        ]


def test_a_devices_file_without_the_columns_is_rejected(database_url, db, tmp_path):
    path = write(tmp_path / "bad.csv", "device,officer\nradio-1,PC101\n")

    result = run("devices", "load", path, "--db", database_url)

    assert result.exit_code == 1
    assert f"{path}: line 1: header lacks device_id, officer_id, starts" in result.stderr
    assert count(db, Device) == 0


@pytest.mark.parametrize(
    ("command", "option", "value", "message"),
    [
        (
            ["report"],
            "--to",
            "9999-12-31",
            "9999-12-31 is outside the dates handled, 1970-01-01 to 2099-12-31",
        ),
        (
            ["recompute"],
            "--from",
            "0001-01-01",
            "0001-01-01 is outside the dates handled, 1970-01-01 to 2099-12-31",
        ),
        (["report"], "--from", "26/11/2026", "expected a date as YYYY-MM-DD, not '26/11/2026'"),
        (
            ["plan", "compliance"],
            "--date",
            "9999-12-31",
            "9999-12-31 is outside the dates handled, 1970-01-01 to 2099-12-31",
        ),
    ],
)
def test_dates_outside_those_handled_are_usage_errors(
    database_url, command, option, value, message
):
    # --to 9999-12-31 once overflowed Python's dates with a traceback.
    result = run(*command, option, value, "--db", database_url)

    assert result.exit_code == 2
    assert f"Invalid value for '{option}': {message}" in result.stderr


HUGE_FIELD = "x" * 200_000  # over the csv module's 128 KB field limit


@pytest.mark.parametrize(
    ("command", "text"),
    [
        (["devices", "load"], f'device_id,officer_id,starts\nradio-1,PC101,"{HUGE_FIELD}"\n'),
        (
            ["pings", "import"],
            "device_id,timestamp,lat,lon\nd1,2024-01-15T10:00:00Z,52.6,-1.1\n"
            f'd1,"{HUGE_FIELD}",52.6,-1.1\n',
        ),
    ],
)
def test_a_csv_field_too_large_to_read_is_a_clear_error_naming_its_line(
    database_url, db, tmp_path, command, text
):
    path = write(tmp_path / "huge.csv", text)

    result = run(*command, path, "--db", database_url)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    line = text.count("\n")  # the last line holds the huge field
    assert (
        f"{path}: line {line}: cannot read the CSV: field larger than field limit" in result.stderr
    )
    assert count(db, Device) == 0


# --- pings import --------------------------------------------------------------------------------

JAN_15 = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)
# d1: 10 minutes in LE01; d2: 5 minutes in LE02, then d1 again in LE01 on 16 January.
GOOD_PINGS = [
    *minute_pings("d1", JAN_15, 10),
    *minute_pings("d2", JAN_15 + timedelta(minutes=2), 5, IN_LE02),
    *minute_pings("d1", JAN_15 + timedelta(days=1), 4),
]
EXPECTED_REPORT = [
    {
        "hotspot_id": "LE01",
        "date": "2024-01-15",
        "presence_minutes": 10.0,
        "officer_minutes": 10.0,
        "visits": 1,
    },
    {
        "hotspot_id": "LE01",
        "date": "2024-01-16",
        "presence_minutes": 4.0,
        "officer_minutes": 4.0,
        "visits": 1,
    },
    {
        "hotspot_id": "LE02",
        "date": "2024-01-15",
        "presence_minutes": 5.0,
        "officer_minutes": 5.0,
        "visits": 1,
    },
]


def csv_with_bad_rows() -> tuple[str, dict[int, str]]:
    """The good pings as CSV with three bad rows among them; and {line: reason}."""
    lines = csv_text(GOOD_PINGS).splitlines()
    lines.insert(3, "d1,2024-01-15T10:30:00,52.637,-1.1333")
    lines.insert(6, "d1,2024-01-15T10:31:00Z,95.0,-1.1333")
    lines.insert(9, "d1,2024-01-15T10:32:00Z,52.637")
    return "\n".join(lines) + "\n", {
        4: "has no UTC offset and is ambiguous",
        7: "lat 95.0 is out of range",
        10: "expected 4 fields, found 3",
    }


def jsonl_with_bad_rows() -> tuple[str, dict[int, str]]:
    """The good pings as JSON lines with three bad lines among them; and {line: reason}."""
    lines = [json.dumps(p) for p in GOOD_PINGS]
    lines.insert(
        2,
        json.dumps(
            {"device_id": "d1", "timestamp": "2024-01-15T10:30:00", "lat": 52.637, "lon": -1.1333}
        ),
    )
    lines.insert(5, '{"device_id": "d1", "timestamp": ')
    lines.insert(
        8, json.dumps({"device_id": "d1", "timestamp": "2024-01-15T10:31:00Z", "lat": 52.637})
    )
    return "\n".join(lines) + "\n", {
        3: "has no UTC offset and is ambiguous",
        6: "not valid JSON",
        9: "missing lon",
    }


PING_FILES = {
    "csv": ("pings.csv", csv_with_bad_rows),
    "jsonl": ("pings.jsonl", jsonl_with_bad_rows),
}


@pytest.mark.parametrize("kind", PING_FILES)
def test_pings_import_stores_pings_reports_bad_rows_and_keeps_dead_letters(
    with_hot_spots, db, tmp_path, kind
):
    name, build = PING_FILES[kind]
    text, bad_lines = build()
    path = write(tmp_path / name, text)

    result = ok("pings", "import", path, "--db", with_hot_spots)

    assert result.stdout == f"imported {len(GOOD_PINGS)} pings from {path}; skipped 3 bad rows\n"
    errors = result.stderr.splitlines()
    assert len(errors) == 3
    for error, (line, reason) in zip(errors, bad_lines.items(), strict=True):
        assert error.startswith(f"{path}: line {line}: ")
        assert reason in error
    assert count(db, PingRow) == len(GOOD_PINGS)
    with db() as session:
        assert set(session.scalars(select(PingRow.source)).all()) == {"import"}
    letters = json.loads(ok("dead-letters", "--format", "json", "--db", with_hot_spots).stdout)
    assert sorted(letter["topic"] for letter in letters) == sorted(
        f"{path}:{line}" for line in bad_lines
    )
    assert all(letter["source"] == "import" for letter in letters)
    by_topic = {letter["topic"]: letter["reason"] for letter in letters}
    for line, reason in bad_lines.items():
        assert reason in by_topic[f"{path}:{line}"]
    # The bad line itself is kept as the dead letter's payload.
    file_lines = path.read_text(encoding="utf-8").split("\n")
    payloads = {letter["topic"]: letter["payload"] for letter in letters}
    for line in bad_lines:
        assert payloads[f"{path}:{line}"] == file_lines[line - 1][:120].rstrip("\r")
    assert report(with_hot_spots) == EXPECTED_REPORT


@pytest.mark.parametrize("kind", PING_FILES)
def test_importing_the_same_file_twice_is_harmless(with_hot_spots, db, tmp_path, kind):
    name, build = PING_FILES[kind]
    path = write(tmp_path / name, build()[0])
    ok("pings", "import", path, "--db", with_hot_spots)
    first = report(with_hot_spots)

    ok("pings", "import", path, "--db", with_hot_spots)

    assert count(db, PingRow) == len(GOOD_PINGS)
    assert report(with_hot_spots) == first == EXPECTED_REPORT


def test_report_after_import_equals_the_offline_dosage_command(with_hot_spots, tmp_path):
    # Two officers overlap in LE01, one leaves and comes back, one crosses midnight.
    pings = [
        *GOOD_PINGS,
        *minute_pings("d3", JAN_15 + timedelta(minutes=5), 12),
        *minute_pings("d3", JAN_15 + timedelta(minutes=19), 6),
        *minute_pings("d4", datetime(2024, 1, 16, 23, 55, tzinfo=UTC), 10, IN_LE02),
    ]
    path = write(tmp_path / "pings.csv", csv_text(pings[::-1]))
    ok("pings", "import", path, "--db", with_hot_spots)

    offline = ok("dosage", "--pings", path, "--geofences", DEMO_GEOFENCES, "--format", "json")

    stored = report(with_hot_spots)
    assert stored == json.loads(offline.stdout)
    assert {(row["hotspot_id"], row["date"]) for row in stored} >= {
        ("LE01", "2024-01-15"),
        ("LE02", "2024-01-16"),
        ("LE02", "2024-01-17"),
    }
    csv_report = ok("report", "--db", with_hot_spots).stdout
    offline_csv = ok("dosage", "--pings", path, "--geofences", DEMO_GEOFENCES).stdout
    assert csv_report == offline_csv


def gpx(points: list[tuple[float, float, datetime | None]]) -> str:
    """A GPX 1.1 document with one track of (lat, lon, time or None) points."""
    trkpts = "\n".join(
        f'      <trkpt lat="{lat}" lon="{lon}">'
        + (f"<time>{iso(when)}</time>" if when else "<ele>60</ele>")
        + "</trkpt>"
        for lat, lon, when in points
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="test" xmlns="http://www.topografix.com/GPX/1/1">
  <trk>
    <name>Foot patrol</name>
    <trkseg>
{trkpts}
    </trkseg>
  </trk>
</gpx>
"""


GPX_TIMES = [JAN_15 + timedelta(minutes=i) for i in (0, 1, 2, 4, 5, 6)]
GPX_POINTS = (
    [(*IN_LE01, t) for t in GPX_TIMES[:3]]
    + [(*IN_LE01, None)]
    + [(*IN_LE01, t) for t in GPX_TIMES[3:]]
)


def test_pings_import_of_gpx_stores_the_points_for_the_device(with_hot_spots, db, tmp_path):
    path = write(tmp_path / "patrol.gpx", gpx(GPX_POINTS))

    result = ok("pings", "import", path, "--device", "radio-x", "--db", with_hot_spots)

    assert result.stdout == f"imported 6 pings from {path}; skipped 1 bad rows\n"
    assert result.stderr == f"{path}: point 4: point has no <time>\n"
    with db() as session:
        stored = session.execute(
            select(PingRow.device_id, PingRow.t_us, PingRow.lat, PingRow.lon).order_by(PingRow.t_us)
        ).all()
    assert [tuple(row) for row in stored] == [
        ("radio-x", int(t.timestamp()) * 1_000_000, *IN_LE01) for t in GPX_TIMES
    ]
    letters = json.loads(ok("dead-letters", "--format", "json", "--db", with_hot_spots).stdout)
    assert [(d["topic"], d["reason"]) for d in letters] == [(f"{path}:4", "point has no <time>")]
    assert report(with_hot_spots) == [
        {
            "hotspot_id": "LE01",
            "date": "2024-01-15",
            "presence_minutes": 6.0,
            "officer_minutes": 6.0,
            "visits": 1,
        }
    ]


def test_pings_import_of_gpx_without_device_is_a_usage_error(with_hot_spots, db, tmp_path):
    path = write(tmp_path / "patrol.gpx", gpx(GPX_POINTS))

    result = run("pings", "import", path, "--db", with_hot_spots)

    assert result.exit_code == 2
    assert "a GPX file needs --device ID" in result.stderr
    assert count(db, PingRow) == 0


def test_pings_import_of_a_file_with_no_valid_pings_fails(with_hot_spots, db, tmp_path):
    path = write(
        tmp_path / "pings.csv",
        "device_id,timestamp,lat,lon\nd1,2024-01-15T10:00:00,52.637,-1.1333\n",
    )

    result = run("pings", "import", path, "--db", with_hot_spots)

    assert result.exit_code == 1
    assert f"{path}: no valid pings" in result.stderr
    assert count(db, PingRow) == 0


# --- recompute -----------------------------------------------------------------------------------

# d1 on the 15th and 16th in LE01; d2 on the 16th and 17th in LE02.
THREE_DAYS = [
    *minute_pings("d1", JAN_15, 10),
    *minute_pings("d1", JAN_15 + timedelta(days=1, hours=2), 8),
    *minute_pings("d2", JAN_15 + timedelta(days=1, hours=2), 6, IN_LE02),
    *minute_pings("d2", JAN_15 + timedelta(days=2), 12, IN_LE02),
]


@pytest.fixture
def three_days(with_hot_spots, tmp_path):
    """The database with THREE_DAYS imported; returns its full report."""
    ok(
        "pings",
        "import",
        write(tmp_path / "pings.csv", csv_text(THREE_DAYS)),
        "--db",
        with_hot_spots,
    )
    full = report(with_hot_spots)
    assert [(r["hotspot_id"], r["date"]) for r in full] == [
        ("LE01", "2024-01-15"),
        ("LE01", "2024-01-16"),
        ("LE02", "2024-01-16"),
        ("LE02", "2024-01-17"),
    ]
    return full


def test_recompute_of_a_date_range_rebuilds_only_those_dates(database_url, db, three_days):
    with db.begin() as session:  # spoil every stored figure
        session.execute(update(DailyDosage).values(presence_us=1, officer_us=1, visits=99))

    result = ok("recompute", "--from", "2024-01-16", "--to", "2024-01-16", "--db", database_url)

    assert result.stdout.startswith("recomputed 2 device-days")  # d1 and d2 on the 16th
    rows = {(r["hotspot_id"], r["date"]): r for r in report(database_url)}
    for row in three_days:
        key = (row["hotspot_id"], row["date"])
        if row["date"] == "2024-01-16":
            assert rows[key] == row
        else:
            assert rows[key]["visits"] == 99  # outside the range: left alone

    ok("recompute", "--db", database_url)

    assert report(database_url) == three_days


def test_recompute_restores_daily_dosage_deleted_by_hand(database_url, db, three_days):
    with db.begin() as session:
        session.execute(delete(DailyDosage))
    assert report(database_url) == []  # nothing queued: the report alone does not rebuild

    result = ok("recompute", "--db", database_url)

    assert result.stdout.startswith("recomputed 4 device-days")
    assert report(database_url) == three_days


def test_recompute_of_a_range_restores_only_that_range(database_url, db, three_days):
    with db.begin() as session:
        session.execute(delete(DailyDosage))

    ok("recompute", "--from", "2024-01-16", "--to", "2024-01-17", "--db", database_url)

    assert report(database_url) == [r for r in three_days if r["date"] >= "2024-01-16"]


# --- purge ---------------------------------------------------------------------------------------


@pytest.fixture
def old_and_new_pings(with_hot_spots, db, tmp_path):
    """Pings 10 days old and 1 hour old, imported; returns (old count, new count)."""
    now = datetime.now(UTC).replace(microsecond=0)
    old = minute_pings("d1", now - timedelta(days=10), 10)
    new = minute_pings("d1", now - timedelta(hours=1), 5)
    ok(
        "pings",
        "import",
        write(tmp_path / "pings.csv", csv_text(old + new)),
        "--db",
        with_hot_spots,
    )
    assert count(db, PingRow) == len(old) + len(new)
    return len(old), len(new)


def stored_times(db) -> list[int]:
    with db() as session:
        return session.scalars(select(PingRow.t_us).order_by(PingRow.t_us)).all()


@pytest.mark.parametrize("how", ["--days", "TRACKER_RETENTION_DAYS"])
def test_purge_deletes_old_pings_and_keeps_new_pings_and_dosage(
    database_url, db, old_and_new_pings, how
):
    old, new = old_and_new_pings
    before = report(database_url)
    assert len(before) >= 2  # the old day's and today's figures
    if how == "--days":
        result = ok("purge", "--days", "5", "--db", database_url)
    else:
        result = ok("purge", "--db", database_url, env={"TRACKER_RETENTION_DAYS": "5"})

    assert result.stdout == f"purged {old} pings older than 5 days\n"
    cutoff_us = (datetime.now(UTC) - timedelta(days=5)).timestamp() * 1_000_000
    times = stored_times(db)
    assert len(times) == new
    assert min(times) > cutoff_us
    assert report(database_url) == before
    ok("recompute", "--db", database_url)  # a full rebuild keeps the purged days' figures
    assert report(database_url) == before


@pytest.mark.parametrize("days", [[], ["--days", "0"]])
def test_purge_without_a_retention_period_is_a_usage_error(
    database_url, db, old_and_new_pings, days
):
    times = stored_times(db)

    result = run("purge", *days, "--db", database_url)

    assert result.exit_code == 2
    assert "no retention period: set --days or TRACKER_RETENTION_DAYS" in result.stderr
    assert stored_times(db) == times


# --- users and tokens ----------------------------------------------------------------------------


def create_user(database_url: str, name: str, *options: str, password: str = PASSWORD) -> Result:
    return run(
        "users",
        "create",
        name,
        *options,
        "--password-stdin",
        "--db",
        database_url,
        input=password + "\n",
    )


@pytest.mark.parametrize(
    "role, options",
    [
        ("admin", []),
        ("supervisor", []),
        ("assurance", []),
        ("officer", ["--officer", "PC101"]),
    ],
)
def test_users_create_reads_the_password_from_stdin(database_url, db, role, options):
    result = create_user(database_url, "sam", "--role", role, *options)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"created {role} sam\n"
    assert PASSWORD not in result.output
    with db.begin() as session:
        user = authenticate(session, "sam", PASSWORD)
        assert user is not None  # the first line of stdin, without its newline
        assert user.role == role
        assert user.officer_id == ("PC101" if role == "officer" else None)
        assert authenticate(session, "sam", PASSWORD + "\n") is None


@pytest.mark.parametrize(
    "options, password, message",
    [
        (["--role", "officer"], PASSWORD, "an officer user needs --officer ID"),
        (["--role", "admin"], "too short", "password must be at least 12 characters"),
    ],
)
def test_users_create_refuses_bad_users(database_url, db, options, password, message):
    result = create_user(database_url, "sam", *options, password=password)

    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {message}")
    assert password not in result.output
    assert count(db, User) == 0


def test_users_create_refuses_a_duplicate_user(database_url, db):
    assert create_user(database_url, "sam", "--role", "admin").exit_code == 0

    result = create_user(
        database_url, "sam", "--role", "supervisor", password="another long password"
    )

    assert result.exit_code == 1
    assert result.stderr == "Error: user 'sam' already exists\n"
    with db() as session:
        assert session.scalars(select(User.role)).all() == ["admin"]


def test_users_create_refuses_an_unknown_role(database_url, db):
    result = create_user(database_url, "sam", "--role", "superuser")

    assert result.exit_code == 2
    assert "'superuser' is not one of" in result.stderr
    assert count(db, User) == 0


def test_users_list_shows_users_without_password_hashes(database_url, db):
    create_user(database_url, "zoe", "--role", "supervisor")
    create_user(database_url, "amir", "--role", "officer", "--officer", "PC101")

    result = ok("users", "list", "--format", "json", "--db", database_url)

    listed = json.loads(result.stdout)
    assert [(u["username"], u["role"], u["officer_id"], u["active"]) for u in listed] == [
        ("amir", "officer", "PC101", True),
        ("zoe", "supervisor", None, True),
    ]
    assert all(set(u) == {"username", "role", "officer_id", "active", "last_login"} for u in listed)
    with db() as session:
        hashes = session.scalars(select(User.password_hash)).all()
    for output in (result.stdout, ok("users", "list", "--db", database_url).stdout):
        assert PASSWORD not in output
        assert all(h not in output for h in hashes)
        assert "password" not in output


def token_owner(db, token: str) -> str | None:
    with db.begin() as session:
        found = token_user(session, token)
        return None if found is None else found[0].username


def test_tokens_are_read_only_unless_issued_full_and_may_expire(database_url, db):
    create_user(database_url, "bi-reader", "--role", "supervisor")
    read = ok("tokens", "issue", "bi-reader", "power-bi", "--db", database_url).stdout.strip()
    full = ok(
        "tokens",
        "issue",
        "bi-reader",
        "sync",
        "--scope",
        "full",
        "--expires-in-days",
        "30",
        "--db",
        database_url,
    ).stdout.strip()
    with db.begin() as session:
        assert token_user(session, read)[1].scope == "read"
        assert token_user(session, full)[1].scope == "full"

    listed = json.loads(ok("tokens", "list", "--format", "json", "--db", database_url).stdout)

    by_name = {t["name"]: t for t in listed}
    assert by_name["power-bi"]["expires_at"] is None
    expires = datetime.fromisoformat(by_name["sync"]["expires_at"])
    assert timedelta(days=29, hours=23) < expires - datetime.now(UTC) <= timedelta(days=30)
    assert {t["state"] for t in listed} == {"active"}
    assert by_name["power-bi"]["last_used"] is not None  # token_user above used it
    assert read not in json.dumps(listed) and full not in json.dumps(listed)
    # An expired token is refused; the list says why.
    with db.begin() as session:
        session.execute(
            update(ApiToken).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert token_owner(db, full) is None
    listed = json.loads(ok("tokens", "list", "--format", "json", "--db", database_url).stdout)
    assert {t["state"] for t in listed} == {"expired"}
    bad = run("tokens", "issue", "bi-reader", "x", "--scope", "admin", "--db", database_url)
    assert bad.exit_code == 2 and "'admin' is not one of 'read', 'full'" in bad.stderr


def test_tokens_issue_and_revoke(database_url, db):
    create_user(database_url, "bi-reader", "--role", "supervisor")

    issued = ok("tokens", "issue", "bi-reader", "power-bi", "--db", database_url)

    token = issued.stdout.strip()
    assert issued.stdout == token + "\n"
    assert token.startswith("hsd_")
    assert token_owner(db, token) == "bi-reader"
    assert token_owner(db, token + "x") is None

    revoked = ok("tokens", "revoke", "bi-reader", "power-bi", "--db", database_url)

    assert revoked.stdout == "revoked 1 token(s)\n"
    assert token_owner(db, token) is None
    again = run("tokens", "revoke", "bi-reader", "power-bi", "--db", database_url)
    assert again.exit_code == 1
    assert again.stderr == "Error: no active token 'power-bi' for 'bi-reader'\n"


def test_revoking_an_unknown_token_name_fails_and_revokes_nothing(database_url, db):
    create_user(database_url, "bi-reader", "--role", "supervisor")
    token = ok("tokens", "issue", "bi-reader", "power-bi", "--db", database_url).stdout.strip()

    result = run("tokens", "revoke", "bi-reader", "tableau", "--db", database_url)

    assert result.exit_code == 1
    assert result.stderr == "Error: no active token 'tableau' for 'bi-reader'\n"
    assert token_owner(db, token) == "bi-reader"


def test_tokens_issue_for_an_unknown_user_fails(database_url):
    result = run("tokens", "issue", "nobody", "power-bi", "--db", database_url)

    assert result.exit_code == 1
    assert result.stderr == "Error: no user 'nobody'\n"
    assert result.stdout == ""
