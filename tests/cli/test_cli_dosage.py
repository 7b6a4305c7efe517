"""The offline `python -m tracker dosage` command (docs/dosage.md), in-process and as a process.

All pings are in January, when Europe/London (the default time zone) is UTC, so local dates
and times below equal the UTC ones unless a test changes --tz.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracker.cli import main

REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER = "hotspot_id,date,presence_minutes,officer_minutes,visits"
COLUMNS = HEADER.split(",")

# Hot spot "hs-a" is the cell lon [-1.10, -1.09] x lat [52.60, 52.61] (about 680 m x 1.1 km);
# "hs-b" is the cell east of it, lon [-1.08, -1.07]. "hs-b" comes first in the file so that
# sorted output is not just file order.
A = (52.605, -1.095)  # (lat, lon) in hs-a
B = (52.605, -1.075)  # (lat, lon) in hs-b
MORNING = datetime(2024, 1, 15, 10, 0, tzinfo=UTC)


def cell(x0: float, y0: float, x1: float, y1: float) -> dict:
    return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}


HOT_SPOTS = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "properties": {"id": "hs-b", "name": "Market east"},
            "geometry": cell(-1.08, 52.60, -1.07, 52.61),
        },
        {
            "type": "Feature",
            "properties": {"id": "hs-a", "name": "Clock Tower"},
            "geometry": cell(-1.10, 52.60, -1.09, 52.61),
        },
    ],
}


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str


def run_in_process(args: list[str]) -> Outcome:
    result = CliRunner().invoke(main, ["dosage", *args])
    # Only click's own exits are allowed: any other exception would be a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return Outcome(result.exit_code, result.stdout, result.stderr)


def run_subprocess(args: list[str]) -> Outcome:
    done = subprocess.run(
        [sys.executable, "-m", "tracker", "dosage", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


RUNNERS = {"in-process": run_in_process, "subprocess": run_subprocess}


@pytest.fixture
def geofences(tmp_path) -> Path:
    path = tmp_path / "hot_spots.geojson"
    path.write_text(json.dumps(HOT_SPOTS), encoding="utf-8")
    return path


def ping(device: str, seconds: float, where=A, start=MORNING, **extra) -> dict:
    """A ping `seconds` after `start` (ISO-8601 with Z), at (lat, lon) `where`."""
    moment = start + timedelta(seconds=seconds)
    return {
        "device_id": device,
        "timestamp": moment.isoformat().replace("+00:00", "Z"),
        "lat": where[0],
        "lon": where[1],
        **extra,
    }


def every_minute(device: str, minutes: int, where=A, start=MORNING) -> list[dict]:
    """Pings once a minute from `start` for `minutes` minutes (minutes + 1 pings)."""
    return [ping(device, 60 * i, where, start) for i in range(minutes + 1)]


def write_csv(path: Path, pings: list[dict]) -> Path:
    columns = ["device_id", "timestamp", "lat", "lon", "accuracy_m", "speed_kmh"]
    lines = [",".join(columns)]
    lines += [",".join(str(p.get(c, "")) for c in columns) for p in pings]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, pings: list[dict]) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in pings), encoding="utf-8")
    return path


def dosage(pings: Path, geofences: Path, *extra: str, runner=run_in_process) -> Outcome:
    return runner(["--pings", str(pings), "--geofences", str(geofences), *extra])


def csv_rows(outcome: Outcome) -> list[str]:
    assert outcome.exit_code == 0, outcome.stderr
    lines = outcome.stdout.splitlines()
    assert lines[0] == HEADER
    return lines[1:]


# Three hot-spot days, written out of order:
# - hs-b, 15 Jan: d1 at 10:00:00 and 10:01:40 -> 100 s = 1.666.. min -> "1.67"; a 100 s visit
#   is under min_visit_s (120 s), so 0 visits.
# - hs-a, 15 Jan: d2 12:00-12:10 and d3 12:05-12:15, pinging each minute -> officer minutes
#   10 + 10 = 20, presence = union 12:00-12:15 = 15; one visit.
# - hs-a, 16 Jan: d1 09:00-09:05 -> 5 minutes, one visit.
MIXED_PINGS = [
    *every_minute("d1", 5, A, datetime(2024, 1, 16, 9, 0, tzinfo=UTC)),
    *every_minute("d3", 10, A, datetime(2024, 1, 15, 12, 5, tzinfo=UTC)),
    ping("d1", 100, B),
    ping("d1", 0, B),
    *every_minute("d2", 10, A, datetime(2024, 1, 15, 12, 0, tzinfo=UTC)),
][::-1]
MIXED_EXPECTED = [
    "hs-a,2024-01-15,15.00,20.00,1",
    "hs-a,2024-01-16,5.00,5.00,1",
    "hs-b,2024-01-15,1.67,1.67,0",
]


@pytest.mark.parametrize("runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_csv_output_header_sorting_and_two_decimals(tmp_path, geofences, runner):
    pings = write_csv(tmp_path / "pings.csv", MIXED_PINGS)

    outcome = dosage(pings, geofences, runner=runner)

    assert outcome.stdout.splitlines()[0] == HEADER
    rows = csv_rows(outcome)
    assert rows == MIXED_EXPECTED
    for row in rows:
        _, _, presence, officer, visits = row.split(",")
        assert re.fullmatch(r"\d+\.\d\d", presence)
        assert re.fullmatch(r"\d+\.\d\d", officer)
        assert re.fullmatch(r"\d+", visits)
    assert outcome.stderr == ""


def test_json_output_is_an_array_of_objects(tmp_path, geofences):
    pings = write_csv(tmp_path / "pings.csv", MIXED_PINGS)

    outcome = dosage(pings, geofences, "--format", "json")

    assert outcome.exit_code == 0, outcome.stderr
    table = json.loads(outcome.stdout)
    assert table == [
        {
            "hotspot_id": "hs-a",
            "date": "2024-01-15",
            "presence_minutes": 15.0,
            "officer_minutes": 20.0,
            "visits": 1,
        },
        {
            "hotspot_id": "hs-a",
            "date": "2024-01-16",
            "presence_minutes": 5.0,
            "officer_minutes": 5.0,
            "visits": 1,
        },
        {
            "hotspot_id": "hs-b",
            "date": "2024-01-15",
            "presence_minutes": 1.67,
            "officer_minutes": 1.67,
            "visits": 0,
        },
    ]
    assert all(list(row) == COLUMNS for row in table)
    assert all(type(row["visits"]) is int for row in table)


def test_no_credited_time_gives_just_the_header(tmp_path, geofences):
    far_away = (51.5, -0.12)
    pings = write_csv(tmp_path / "pings.csv", every_minute("d1", 10, far_away))

    outcome = dosage(pings, geofences)

    assert outcome.exit_code == 0
    assert outcome.stdout == HEADER + "\n"
    assert json.loads(dosage(pings, geofences, "--format", "json").stdout) == []


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_csv_and_json_lines_inputs_give_identical_output(tmp_path, geofences, fmt):
    with_accuracy = [{**p, "accuracy_m": 5} for p in MIXED_PINGS]
    csv_pings = write_csv(tmp_path / "pings.csv", with_accuracy)
    jsonl_pings = write_jsonl(tmp_path / "pings.jsonl", with_accuracy)

    from_csv = dosage(csv_pings, geofences, "--format", fmt)
    from_jsonl = dosage(jsonl_pings, geofences, "--format", fmt)

    assert from_csv.exit_code == from_jsonl.exit_code == 0
    assert from_csv.stdout == from_jsonl.stdout
    table = csv_rows(from_csv) if fmt == "csv" else json.loads(from_csv.stdout)
    assert len(table) == len(MIXED_EXPECTED)  # the same three hot-spot days, not nothing


# --- every parameter flag has an observable effect ----------------------------------------------

# Pings at 0, 60, 120, then (after a 240 s gap) 360, 420, 480 s from 10:00.
GAPPY = [ping("d1", s) for s in (0, 60, 120, 360, 420, 480)]
# Pings every 120 s; the one at 120 s is 150 m accurate, the others 50 m.
FUZZY = [ping("d1", s, accuracy_m=150 if s == 120 else 50) for s in (0, 120, 240, 360)]
# Still at one end of hs-a for 2 minutes, ~1.04 km to the other end in 60 s (~62 km/h), still.
# Haversine: dlat 0.008 deg = 0.8895 km, dlon 0.008 deg = 0.8895 * cos(52.605) = 0.540 km.
WEST, EAST = (52.601, -1.099), (52.609, -1.091)
JUMPY = [ping("d1", s, WEST) for s in (0, 60, 120)] + [ping("d1", s, EAST) for s in (180, 240, 300)]


@pytest.mark.parametrize(
    "pings, flags, default_rows, flagged_rows",
    [
        # 23:00-23:05 UTC on 15 Jan is 08:00-08:05 on 16 Jan in Tokyo (UTC+9).
        pytest.param(
            every_minute("d1", 5, start=datetime(2024, 1, 15, 23, 0, tzinfo=UTC)),
            ["--tz", "Asia/Tokyo"],
            ["hs-a,2024-01-15,5.00,5.00,1"],
            ["hs-a,2024-01-16,5.00,5.00,1"],
            id="tz",
        ),
        # 23:58-00:02 UTC is split at London midnight (2 + 2 minutes; the visit counts on the day
        # it starts); in New York it is 18:58-19:02 on 15 Jan, all one day.
        pytest.param(
            every_minute("d1", 4, start=datetime(2024, 1, 15, 23, 58, tzinfo=UTC)),
            ["--tz", "America/New_York"],
            ["hs-a,2024-01-15,2.00,2.00,1", "hs-a,2024-01-16,2.00,2.00,0"],
            ["hs-a,2024-01-15,4.00,4.00,1"],
            id="tz-midnight-split",
        ),
        # Default max gap 180 s: the 240 s gap credits nothing -> 2 + 2 minutes, two visits
        # of 120 s each (>= min_visit_s 120). With 240 (inclusive) the gap counts -> 8
        # minutes, 1 visit.
        pytest.param(
            GAPPY,
            ["--max-gap-s", "240"],
            ["hs-a,2024-01-15,4.00,4.00,2"],
            ["hs-a,2024-01-15,8.00,8.00,1"],
            id="max-gap-s",
        ),
        pytest.param(
            GAPPY, ["--max-gap-s", "30"], ["hs-a,2024-01-15,4.00,4.00,2"], [], id="max-gap-s-short"
        ),
        # Default 100 m: the 150 m ping is unusable, 0 -> 240 is a 240 s gap, only 240 -> 360
        # credits: 2 minutes, one visit. With 150 (inclusive) all credit: 6 minutes.
        pytest.param(
            FUZZY,
            ["--max-accuracy-m", "150"],
            ["hs-a,2024-01-15,2.00,2.00,1"],
            ["hs-a,2024-01-15,6.00,6.00,1"],
            id="max-accuracy-m",
        ),
        pytest.param(
            FUZZY,
            ["--max-accuracy-m", "40"],
            ["hs-a,2024-01-15,2.00,2.00,1"],
            [],
            id="max-accuracy-m-strict",
        ),
        # Presence runs 10:00-10:02 and 10:06-10:08: a 240 s break. Default merge 60 s: 2 visits;
        # merging breaks up to 240 s: one visit, the same 4 minutes.
        pytest.param(
            GAPPY,
            ["--visit-merge-gap-s", "240"],
            ["hs-a,2024-01-15,4.00,4.00,2"],
            ["hs-a,2024-01-15,4.00,4.00,1"],
            id="visit-merge-gap-s",
        ),
        # A 5-minute visit counts by default (>= 120 s) but not when visits must be > 300 s;
        # the row stays because it has credited time.
        pytest.param(
            every_minute("d1", 5),
            ["--min-visit-s", "301"],
            ["hs-a,2024-01-15,5.00,5.00,1"],
            ["hs-a,2024-01-15,5.00,5.00,0"],
            id="min-visit-s",
        ),
        # 30 km/h cuts the 62 km/h span 120 -> 180 s: spans 0-120 and 180-300 = 4 minutes, one
        # visit (the 60 s break is within visit_merge_gap_s).
        pytest.param(
            JUMPY,
            ["--max-speed-kmh", "30"],
            ["hs-a,2024-01-15,5.00,5.00,1"],
            ["hs-a,2024-01-15,4.00,4.00,1"],
            id="max-speed-kmh",
        ),
        pytest.param(
            JUMPY,
            ["--max-speed-kmh", "100"],
            ["hs-a,2024-01-15,5.00,5.00,1"],
            ["hs-a,2024-01-15,5.00,5.00,1"],
            id="max-speed-kmh-fast-enough",
        ),
    ],
)
def test_parameter_flags(tmp_path, geofences, pings, flags, default_rows, flagged_rows):
    path = write_csv(tmp_path / "pings.csv", pings)

    assert csv_rows(dosage(path, geofences)) == default_rows
    assert csv_rows(dosage(path, geofences, *flags)) == flagged_rows


def test_parameter_flags_work_together_as_a_subprocess(tmp_path, geofences):
    # GAPPY with a 240 s max gap (8 minutes) in Tokyo (19:00 local, same date), and visits
    # of at least 481 s: the single 480 s visit no longer counts.
    path = write_jsonl(tmp_path / "pings.jsonl", GAPPY)

    outcome = dosage(
        path,
        geofences,
        "--max-gap-s",
        "240",
        "--tz",
        "Asia/Tokyo",
        "--min-visit-s",
        "481",
        "--format",
        "json",
        runner=run_subprocess,
    )

    assert outcome.exit_code == 0, outcome.stderr
    assert json.loads(outcome.stdout) == [
        {
            "hotspot_id": "hs-a",
            "date": "2024-01-15",
            "presence_minutes": 8.0,
            "officer_minutes": 8.0,
            "visits": 0,
        },
    ]


# --- bad rows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("runner", RUNNERS.values(), ids=RUNNERS.keys())
def test_timestamp_without_offset_is_rejected_with_its_line_number(tmp_path, geofences, runner):
    # Six pings a minute apart (lines 2-7); the last has no offset, so only 10:00-10:04 counts.
    pings = every_minute("d1", 5)
    pings[-1]["timestamp"] = "2024-01-15T10:05:00"
    path = write_csv(tmp_path / "pings.csv", pings)

    outcome = dosage(path, geofences, runner=runner)

    assert outcome.exit_code == 0
    assert csv_rows(outcome) == ["hs-a,2024-01-15,4.00,4.00,1"]
    problem = [line for line in outcome.stderr.splitlines() if ": line " in line]
    assert len(problem) == 1
    assert problem[0].startswith(f"{path}: line 7: ")
    assert "ambiguous" in problem[0]
    assert "Traceback" not in outcome.stderr


def test_bad_rows_are_reported_on_stderr_and_skipped(tmp_path, geofences):
    path = tmp_path / "pings.csv"
    path.write_text(
        "\n".join(
            [
                "device_id,timestamp,lat,lon,accuracy_m",  # line 1
                "d1,2024-01-15T10:00:00Z,52.605,-1.095,5",  # line 2
                "d1,2024-01-15T10:01:00Z,north,-1.095,5",  # line 3: lat is not a number
                "d1,2024-01-15T10:01:00Z,52.605,-1.095,5",  # line 4
                "d1,2024-01-15T10:02:00Z,52.605",  # line 5: 3 fields, not 5
                "d1,2024-01-15T10:02:00Z,52.605,-1.095,5",  # line 6
                "d1,2024-01-15T10:03:00Z,0,0,5",  # line 7: (0, 0)
                "d1,1705313040000,52.605,-1.095,5",  # line 8: epoch milliseconds
                "d1,1705313040,52.605,-1.095,5",  # line 9: 10:04:00
            ]
        )
        + "\n",
        encoding="utf-8",
    )

    outcome = dosage(path, geofences)

    # Good pings at 10:00, 10:01, 10:02 and 10:04: 10:02 -> 10:04 is 120 s <= 180 s, so
    # 4 minutes are credited, one visit.
    assert outcome.exit_code == 0
    assert csv_rows(outcome) == ["hs-a,2024-01-15,4.00,4.00,1"]
    reported = [line for line in outcome.stderr.splitlines() if ": line " in line]
    assert [
        re.match(rf"{re.escape(str(path))}: line (\d+): .+", line).group(1) for line in reported
    ] == ["3", "5", "7", "8"]
    assert "lat 'north' is not a number" in reported[0]
    assert "expected 5 fields, found 3" in reported[1]
    assert "(0, 0)" in reported[2]
    assert "out of range" in reported[3]
    assert "Traceback" not in outcome.stderr


def test_bad_json_lines_are_reported_and_skipped(tmp_path, geofences):
    path = tmp_path / "pings.jsonl"
    records = [json.dumps(p) for p in every_minute("d1", 3)]
    records.insert(2, "[1, 2]")
    records.insert(4, "{broken")
    path.write_text("\n".join(records) + "\n", encoding="utf-8")

    outcome = dosage(path, geofences)

    assert csv_rows(outcome) == ["hs-a,2024-01-15,3.00,3.00,1"]
    reported = [line for line in outcome.stderr.splitlines() if ": line " in line]
    assert reported == [
        f"{path}: line 3: expected a JSON object",
        f"{path}: line 5: not valid JSON (Expecting property name enclosed in double quotes)",
    ]


# --- failures -----------------------------------------------------------------------------------


def _empty_pings(tmp_path, geofences):
    path = tmp_path / "pings.csv"
    path.write_text("", encoding="utf-8")
    return ["--pings", str(path), "--geofences", str(geofences)], ["empty"]


def _missing_pings(tmp_path, geofences):
    path = tmp_path / "no_such_pings.csv"
    return ["--pings", str(path), "--geofences", str(geofences)], ["no_such_pings.csv"]


def _all_rows_bad(tmp_path, geofences):
    pings = every_minute("d1", 2)
    for p in pings:
        p["timestamp"] = p["timestamp"].rstrip("Z")
    path = write_csv(tmp_path / "pings.csv", pings)
    return (
        ["--pings", str(path), "--geofences", str(geofences)],
        ["no valid pings", f"{path}: line 2: ", f"{path}: line 4: "],
    )


def _invalid_geojson(tmp_path, geofences):
    bow_tie = {
        "type": "Polygon",
        "coordinates": [
            [[-1.10, 52.60], [-1.09, 52.61], [-1.09, 52.60], [-1.10, 52.61], [-1.10, 52.60]]
        ],
    }
    bad = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"id": "hs-x", "name": "X"}, "geometry": bow_tie}
        ],
    }
    path = tmp_path / "bad.geojson"
    path.write_text(json.dumps(bad), encoding="utf-8")
    pings = write_csv(tmp_path / "pings.csv", every_minute("d1", 5))
    return (
        ["--pings", str(pings), "--geofences", str(path)],
        ["bad.geojson", "feature 1", "hs-x", "Self-intersection"],
    )


def _unparsable_geojson(tmp_path, geofences):
    path = tmp_path / "broken.geojson"
    path.write_text('{"type": "FeatureCollection",\n "features": [}', encoding="utf-8")
    pings = write_csv(tmp_path / "pings.csv", every_minute("d1", 5))
    return (
        ["--pings", str(pings), "--geofences", str(path)],
        ["broken.geojson", "not valid JSON", "line 2"],
    )


def _bad_tz(tmp_path, geofences):
    pings = write_csv(tmp_path / "pings.csv", every_minute("d1", 5))
    return (
        ["--pings", str(pings), "--geofences", str(geofences), "--tz", "Mars/Olympus_Mons"],
        ["Mars/Olympus_Mons"],
    )


def _negative_max_gap(tmp_path, geofences):
    pings = write_csv(tmp_path / "pings.csv", every_minute("d1", 5))
    return (
        ["--pings", str(pings), "--geofences", str(geofences), "--max-gap-s", "-5"],
        ["max_gap_s", "-5"],
    )


FAILURES = {
    "empty-pings": _empty_pings,
    "missing-pings": _missing_pings,
    "all-rows-bad": _all_rows_bad,
    "invalid-geojson": _invalid_geojson,
    "unparsable-geojson": _unparsable_geojson,
    "bad-tz": _bad_tz,
    "negative-max-gap-s": _negative_max_gap,
}


# Every failure in-process; one of each kind (file, domain, option) also as a real process,
# where a traceback would really reach the user's terminal.
AS_SUBPROCESS = ("missing-pings", "invalid-geojson", "bad-tz")
FAILURE_RUNS = [
    *(
        pytest.param(case, run_in_process, id=f"{name}-in-process")
        for name, case in FAILURES.items()
    ),
    *(
        pytest.param(FAILURES[name], run_subprocess, id=f"{name}-subprocess")
        for name in AS_SUBPROCESS
    ),
]


@pytest.mark.parametrize("case, runner", FAILURE_RUNS)
def test_failures_exit_non_zero_with_a_clear_message(tmp_path, geofences, case, runner):
    args, expected_in_stderr = case(tmp_path, geofences)

    outcome = runner(args)

    assert outcome.exit_code != 0
    assert "Traceback" not in outcome.stderr
    assert "Error: " in outcome.stderr
    for text in expected_in_stderr:
        assert text in outcome.stderr
    assert HEADER not in outcome.stdout  # no table is printed
