"""The operation plan (docs/plan.md): YAML validation with line numbers, storing, auditing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from tracker.cli import main
from tracker.dosage.engine import DosageParams
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.recompute import replace_hot_spots
from tracker.foundation.clock import local_today
from tracker.foundation.models import AuditEvent, HotSpotRow
from tracker.plan.models import Operation, OperationHotSpot, PlanPhase
from tracker.plan.reader import parse_plan, read_plan
from tracker.plan.storage import find_operation, load_plan, operation_day, plan_table, stored_plan
from tracker.plan.targets import PatrolWindow, PlanError, parse_window

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_PLAN = REPO_ROOT / "geofences" / "demo_plan.yaml"
DEMO_GEOFENCES = REPO_ROOT / "geofences" / "leicestershire_demo.geojson"
TODAY = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

EXAMPLE = """\
operation: Operation Guardian (DEMONSTRATION)
start: 2026-04-01
end: 2027-03-31
tz: Europe/London
defaults:            # apply to every hot spot unless overridden
  presence_minutes_per_day: 45
  visits_per_day: 3
  min_visit_minutes: 10
  max_presence_minutes_per_day: 240
hotspots:
  LE01:
    phases:
      - {from: 2026-04-01, to: 2026-09-30, presence_minutes_per_day: 60, visits_per_day: 4, windows: ["Fri-Sat 18:00-02:00"]}
      - {from: 2026-10-01, to: 2027-03-31, presence_minutes_per_week: 300}
  LE02: {}            # defaults for the whole operation
"""  # noqa: E501


def plan_text(
    hotspots: str, defaults: str = "  presence_minutes_per_day: 45\n", head: str = ""
) -> str:
    """Return a plan for 2026-04-01..2027-03-31 with the given (indented) YAML blocks."""
    return (
        "operation: Test operation\nstart: 2026-04-01\nend: 2027-03-31\n"
        f"tz: Europe/London\n{head}defaults:\n{defaults}hotspots:\n{hotspots}"
    )


def store_hot_spots(session, *ids: str) -> None:
    session.add_all(HotSpotRow(id=h, name=f"Hot spot {h}", geometry={}, properties={}) for h in ids)


# --- parsing -------------------------------------------------------------------------------


def test_example_plan_layers_defaults_hot_spot_and_phase_targets():
    plan = parse_plan(EXAMPLE)
    assert plan.name == "Operation Guardian (DEMONSTRATION)"
    assert (plan.start_date, plan.end_date, plan.tz) == (
        date(2026, 4, 1),
        date(2027, 3, 31),
        "Europe/London",
    )
    assert plan.hotspot_ids == ("LE01", "LE02")
    summer, winter, le02 = plan.phases
    assert (summer.hotspot_id, summer.starts, summer.ends) == (
        "LE01",
        date(2026, 4, 1),
        date(2026, 9, 30),
    )
    assert (summer.presence_minutes_per_day, summer.presence_minutes_per_week) == (60, None)
    assert (
        summer.visits_per_day,
        summer.min_visit_minutes,
        summer.max_presence_minutes_per_day,
    ) == (4, 10, 240)
    assert summer.windows == (PatrolWindow((4, 5), 18, 2),)
    # A per-week target in a phase replaces the per-day default rather than joining it.
    assert (winter.presence_minutes_per_day, winter.presence_minutes_per_week) == (None, 300)
    assert (winter.visits_per_day, winter.windows) == (3, ())
    assert (le02.starts, le02.ends, le02.presence_minutes_per_day) == (
        date(2026, 4, 1),
        date(2027, 3, 31),
        45,
    )


def test_hot_spot_keys_override_defaults_and_phase_dates_default_to_the_operation():
    plan = parse_plan(
        plan_text(
            "  LE01:\n    presence_minutes_per_week: 140\n    min_visit_minutes: 15\n"
            "    phases:\n      - {to: 2026-06-30}\n      - {from: 2026-07-01, visits_per_day: 2}\n"
        )
    )
    first, second = plan.phases
    assert (first.starts, first.ends, second.starts, second.ends) == (
        date(2026, 4, 1),
        date(2026, 6, 30),
        date(2026, 7, 1),
        date(2027, 3, 31),
    )
    assert [p.presence_minutes_per_week for p in plan.phases] == [140, 140]
    assert [p.presence_minutes_per_day for p in plan.phases] == [None, None]
    assert [p.min_visit_minutes for p in plan.phases] == [15, 15]
    assert [p.visits_per_day for p in plan.phases] == [None, 2]
    assert first.presence_target_minutes() == 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (plan_text("  LE01: {}\n", head="colour: red\n"), "line 5: colour: unknown key 'colour'"),
        (
            plan_text("  LE01:\n    phases:\n      - {from: 2026-05-01, until: 2026-06-01}\n"),
            "line 10: hotspots.LE01.phases[0].until: unknown key 'until'",
        ),
        (
            plan_text("  LE01: {}\n  LE02: {}\n  LE01: {}\n"),
            "line 10: hotspots.LE01: repeated key (first on line 8)",
        ),
        (
            plan_text("  LE01:\n    phases:\n      - {from: 2026-03-01, to: 2026-06-01}\n"),
            "line 10: hotspots.LE01.phases[0].from: 2026-03-01 is outside the operation "
            "(2026-04-01 to 2027-03-31)",
        ),
        (
            plan_text("  LE01:\n    phases:\n      - from: 2026-05-01\n        to: 2027-04-01\n"),
            "line 11: hotspots.LE01.phases[0].to: 2027-04-01 is outside the operation",
        ),
        (
            plan_text("  LE01:\n    phases:\n      - {from: 2026-05-01, to: 2026-04-20}\n"),
            "line 10: hotspots.LE01.phases[0].to: 2026-04-20 is before from 2026-05-01",
        ),
        (
            plan_text(
                "  LE01:\n    phases:\n      - {from: 2026-04-01, to: 2026-06-30}\n"
                "      - {from: 2026-06-30, to: 2026-09-30}\n"
            ),
            "line 11: hotspots.LE01: the phase from 2026-06-30 overlaps the one on line 10 "
            "(to 2026-06-30)",
        ),
        (
            plan_text("  LE01: {presence_minutes_per_day: 30, presence_minutes_per_week: 200}\n"),
            "line 8: hotspots.LE01.presence_minutes_per_week: give presence_minutes_per_day or "
            "presence_minutes_per_week, not both",
        ),
        (
            plan_text("  LE01: {visits_per_day: 2}\n", defaults="  visits_per_day: 1\n"),
            "line 8: hotspots.LE01: no presence target",
        ),
        (
            plan_text("  LE01: {visits_per_day: -1}\n"),
            "line 8: hotspots.LE01.visits_per_day: expected a number >= 0, not '-1'",
        ),
        (
            plan_text("  LE01: {}\n", defaults="  presence_minutes_per_day: lots\n"),
            "line 6: defaults.presence_minutes_per_day: expected a number >= 0, not 'lots'",
        ),
        (
            plan_text("  LE01: {min_visit_minutes: .nan}\n"),
            "line 8: hotspots.LE01.min_visit_minutes: expected a number >= 0",
        ),
        (
            plan_text("  LE01: {max_presence_minutes_per_day: 30}\n"),
            "line 8: hotspots.LE01.max_presence_minutes_per_day: "
            "max_presence_minutes_per_day 30 is less than the presence target of 45 minutes a day",
        ),
        # An inherited maximum is reported at the phase, naming where the maximum came from.
        (
            plan_text(
                "  LE01:\n    phases:\n      - {presence_minutes_per_day: 90}\n",
                defaults="  presence_minutes_per_day: 45\n  max_presence_minutes_per_day: 60\n",
            ),
            "line 11: hotspots.LE01.phases[0]: max_presence_minutes_per_day 60 is less than the "
            "presence target of 90 minutes a day (defaults.max_presence_minutes_per_day on line 7)",
        ),
        (
            plan_text('  LE01: {windows: ["Fri-Sat 18:30-02:00"]}\n'),
            "line 8: hotspots.LE01.windows[0]: window 'Fri-Sat 18:30-02:00': whole hours only",
        ),
        (
            plan_text("  LE01:\n    windows:\n      - Fri 18:00-02:00\n      - Fry 18:00-02:00\n"),
            "line 11: hotspots.LE01.windows[1]: window 'Fry 18:00-02:00': unknown day 'Fry'",
        ),
        (
            plan_text('  LE01: {windows: ["evenings"]}\n'),
            "line 8: hotspots.LE01.windows[0]: cannot read window 'evenings'",
        ),
        (plan_text('  LE01: {windows: ["Sat 18:00-18:00"]}\n'), "starts and ends at the same hour"),
        (
            plan_text('  LE01: {presence_minutes_per_day: 90, windows: ["Sat 18:00-19:00"]}\n'),
            "line 8: hotspots.LE01.presence_minutes_per_day: asks for 90 minutes a day but its "
            "days have only 60 minutes of patrol window",
        ),
        (
            plan_text("  LE01: {presence_minutes_per_week: 10081}\n"),
            "asks for 1440.14 minutes a day but its days have only 1440 minutes",
        ),
        (
            plan_text("  LE01: {}\n").replace("Europe/London", "Europe/Lundon"),
            "line 4: tz: unknown time zone 'Europe/Lundon'",
        ),
        (
            plan_text("  LE01: {}\n").replace("end: 2027-03-31", "end: 2026-03-31"),
            "line 3: end: 2026-03-31 is before the start 2026-04-01",
        ),
        (
            plan_text("  LE01: {}\n").replace("start: 2026-04-01", "start: 2026-04-01 09:00:00"),
            "line 2: start: expected a date (YYYY-MM-DD), not a time",
        ),
        (
            plan_text("  LE01: {}\n").replace("start: 2026-04-01", "start: April"),
            "line 2: start: expected a date (YYYY-MM-DD), not 'April'",
        ),
        (plan_text("  LE01: 5\n"), "line 8: hotspots.LE01: expected a mapping of targets"),
        (
            plan_text("  LE01:\n    phases: {from: 2026-04-01}\n"),
            "line 9: hotspots.LE01.phases: expected a list of phases",
        ),
        ("operation: X\nstart: 2026-04-01\n", "line 1: end: missing (required)"),
        (
            "operation: X\nstart: 2026-04-01\nend: 2026-05-01\nhotspots: {}\n",
            "line 4: hotspots: no hot spots",
        ),
        ("operation: X\nstart: [2026-04-01\n", "line 3: not valid YAML"),
        ("- just\n- a list\n", "line 1: plan: expected a mapping"),
    ],
)
def test_invalid_plans_are_rejected_naming_the_line_and_field(text, expected):
    with pytest.raises(PlanError) as caught:
        parse_plan(text, source="plan.yaml")
    message = str(caught.value)
    assert message.startswith("plan.yaml: line ")
    assert (f"plan.yaml: {expected}" if expected.startswith("line ") else expected) in message


def test_yaml_nested_too_deeply_is_a_plan_error_not_a_crash():
    with pytest.raises(PlanError, match=r"^plan.yaml: not valid YAML: .* nested too deeply$"):
        parse_plan("operation: " + "[" * 5_000 + "]" * 5_000 + "\n", source="plan.yaml")


def test_every_problem_is_reported_in_file_order():
    text = plan_text(
        "  LE01: {presence_minutes_per_day: 30, visits_per_day: -2, colour: blue}\n"
        "  LE02: {presence_minutes_per_day: 30, windows: [x]}\n",
        defaults="  presence_minutes_per_day: many\n  shade: 3\n",
    )
    with pytest.raises(PlanError) as caught:
        parse_plan(text, source="p.yaml")
    lines = str(caught.value).splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "line 6",
        "line 7",
        "line 9",
        "line 9",
        "line 10",
    ]


@pytest.mark.parametrize(
    ("text", "weekdays", "offsets", "canonical"),
    [
        ("Fri-Sat 18:00-02:00", (4, 5), range(18, 26), "Fri-Sat 18:00-02:00"),
        ("fri,sat 18:00-02:00", (4, 5), range(18, 26), "Fri-Sat 18:00-02:00"),
        ("Sat-Mon 22:00-24:00", (0, 5, 6), range(22, 24), "Mon,Sat-Sun 22:00-24:00"),
        ("Monday-Wednesday 8:00-10:00", (0, 1, 2), range(8, 10), "Mon-Wed 08:00-10:00"),
        ("Daily 00:00-24:00", tuple(range(7)), range(0, 24), "Daily 00:00-24:00"),
        ("20:00-00:00", tuple(range(7)), range(20, 24), "Daily 20:00-00:00"),
    ],
)
def test_windows_are_parsed_to_weekdays_and_hours_after_the_opening_midnight(
    text, weekdays, offsets, canonical
):
    window = parse_window(text)
    assert window.weekdays == weekdays
    assert window.offsets() == offsets
    assert window.text() == canonical
    assert parse_window(window.text()) == window
    assert PatrolWindow.from_json(json.loads(json.dumps(window.to_json()))) == window


def test_window_mask_covers_the_next_morning_and_targets_only_window_days():
    plan = parse_plan(
        plan_text('  LE01: {presence_minutes_per_week: 120, windows: ["Fri-Sat 18:00-02:00"]}\n')
    )
    phase = plan.phases[0]
    mask = phase.window_hours()
    assert sorted(mask[4].nonzero()[0]) == [18, 19, 20, 21, 22, 23, 24, 25]
    assert mask[5].sum() == 8 and mask[[0, 1, 2, 3, 6]].sum() == 0
    assert phase.target_weekdays() == (4, 5)
    assert phase.presence_target_minutes() == 60  # a week's 120 shared by Friday and Saturday


def test_the_demo_plan_covers_the_25_demo_hot_spots_for_a_year_running_today():
    plan = read_plan(DEMO_PLAN)
    assert "DEMONSTRATION" in plan.name
    assert "DEMONSTRATION" in DEMO_PLAN.read_text(encoding="utf-8").splitlines()[0]
    assert plan.hotspot_ids == tuple(f"LE{i:02d}" for i in range(1, 26))
    assert plan.start_date <= date(2026, 11, 26) <= plan.end_date
    assert 360 <= (plan.end_date - plan.start_date).days <= 366
    assert any(p.windows for p in plan.phases)
    assert any(p.presence_minutes_per_week for p in plan.phases)
    by_spot = {h: [p for p in plan.phases if p.hotspot_id == h] for h in plan.hotspot_ids}
    assert any(len(phases) > 1 for phases in by_spot.values())
    # Higher harm, higher target: the highest-harm hot spot asks for more than the lowest.
    assert (
        by_spot["LE01"][0].presence_target_minutes() > by_spot["LE22"][0].presence_target_minutes()
    )


# --- storing -------------------------------------------------------------------------------


def test_the_demo_plan_loads_after_the_demo_hot_spots(db):
    with db.begin() as session:
        replace_hot_spots(session, load_hot_spots(DEMO_GEOFENCES), DosageParams())
        load_plan(session, read_plan(DEMO_PLAN), actor="admin")
    with db() as session:
        operation = find_operation(session, now=TODAY)
        assert "DEMONSTRATION" in operation.name
        assert stored_plan(session, operation) == read_plan(DEMO_PLAN)
        assert operation_day(operation, local_today(operation.tz, TODAY)) == 179


def test_unknown_hot_spots_are_rejected_with_their_lines_and_nothing_is_stored(db):
    with db.begin() as session:
        store_hot_spots(session, "LE01")
    plan = parse_plan(plan_text("  LE01: {}\n  LE99: {}\n  LE98: {}\n"), source="p.yaml")
    with pytest.raises(PlanError) as caught, db.begin() as session:
        load_plan(session, plan, actor="admin")
    assert str(caught.value).splitlines() == [
        "p.yaml: line 9: hotspots.LE99: unknown hot spot (not in the stored hot spot set; "
        "load the geofences first)",
        "p.yaml: line 10: hotspots.LE98: unknown hot spot (not in the stored hot spot set; "
        "load the geofences first)",
    ]
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Operation)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_loading_replaces_the_plan_and_audits_each_change(db):
    first = parse_plan(EXAMPLE)
    second = parse_plan(
        EXAMPLE.replace("presence_minutes_per_week: 300", "presence_minutes_per_week: 350").replace(
            "  LE02: {}            # defaults for the whole operation\n",
            "  LE03: {presence_minutes_per_day: 20}\n",
        )
    )
    with db.begin() as session:
        store_hot_spots(session, "LE01", "LE02", "LE03")
    with db.begin() as session:
        created = load_plan(session, first, actor="alice")
    with db.begin() as session:
        again = load_plan(session, first, actor="alice")  # unchanged: no new event
    with db.begin() as session:
        replaced = load_plan(session, second, actor="bob")
    assert created.id == again.id == replaced.id
    with db() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [(e.actor, e.action, e.subject) for e in events] == [
            ("alice", "plan.load", "operation Operation Guardian (DEMONSTRATION)"),
            ("bob", "plan.load", "operation Operation Guardian (DEMONSTRATION)"),
        ]
        assert events[0].before is None
        assert events[0].after == first.summary()
        assert events[1].before == first.summary()
        assert events[1].after == second.summary()
        assert events[1].after["hotspots"] == ["LE01", "LE03"]
        assert events[1].after["phases"][1]["presence_minutes_per_week"] == 350
        assert events[1].after["phases"][0]["windows"] == "Fri-Sat 18:00-02:00"
        operation = session.get(Operation, created.id)
        assert stored_plan(session, operation) == second
        assert session.scalars(
            select(OperationHotSpot.hotspot_id).order_by(OperationHotSpot.hotspot_id)
        ).all() == ["LE01", "LE03"]
        assert session.scalar(select(func.count()).select_from(PlanPhase)) == 3
        assert session.scalars(select(PlanPhase.windows).order_by(PlanPhase.starts)).first() == [
            {"weekdays": [4, 5], "start_hour": 18, "end_hour": 2}
        ]


def test_find_operation_prefers_the_named_then_the_running_then_the_latest(db):
    with db.begin() as session:
        store_hot_spots(session, "LE01")
        for name, start, end in (
            ("Old", "2025-01-01", "2025-12-31"),
            ("Now", "2026-06-01", "2027-05-31"),
            ("Next", "2027-06-01", "2028-05-31"),
        ):
            text = (
                plan_text("  LE01: {}\n")
                .replace("Test operation", name)
                .replace("2026-04-01", start)
                .replace("2027-03-31", end)
            )
            load_plan(session, parse_plan(text), actor="admin")
    with db() as session:
        assert find_operation(session, now=TODAY).name == "Now"
        assert find_operation(session, now=datetime(2030, 1, 1, tzinfo=UTC)).name == "Next"
        assert find_operation(session, "Old").name == "Old"
        with pytest.raises(PlanError, match="no operation named 'Gone'"):
            find_operation(session, "Gone")


def test_find_operation_without_a_plan_says_what_to_run(db):
    with db() as session, pytest.raises(PlanError, match="plan load"):
        find_operation(session)


# --- the command line ----------------------------------------------------------------------


def test_plan_load_and_show_on_the_command_line(database_url, db, tmp_path):
    with db.begin() as session:
        replace_hot_spots(session, load_hot_spots(DEMO_GEOFENCES), DosageParams())
    runner = CliRunner()
    result = runner.invoke(main, ["plan", "load", str(DEMO_PLAN), "--db", database_url])
    assert result.exit_code == 0, result.output
    assert "25 hot spots" in result.output
    result = runner.invoke(main, ["plan", "show", "--db", database_url, "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows == json.loads(
        json.dumps(
            [
                {
                    k: (v.isoformat() if isinstance(v, date) else None if v != v else v)
                    for k, v in row.items()
                }
                for row in plan_table(read_plan(DEMO_PLAN)).to_dict(orient="records")
            ]
        )
    )
    result = runner.invoke(main, ["plan", "show", "--db", database_url])
    assert result.stdout.splitlines()[0] == (
        "operation,hotspot_id,from,to,presence_minutes_per_day,presence_minutes_per_week,"
        "visits_per_day,min_visit_minutes,max_presence_minutes_per_day,windows"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(plan_text("  LE01: {colour: red}\n"), encoding="utf-8")
    result = runner.invoke(main, ["plan", "load", str(bad), "--db", database_url])
    assert result.exit_code == 1
    assert f"{bad}: line 8: hotspots.LE01.colour: unknown key" in result.stderr


def test_plan_load_refuses_a_time_zone_other_than_the_dosage_days(database_url, tmp_path):
    other = tmp_path / "paris.yaml"
    other.write_text(
        plan_text("  LE01: {}\n").replace("Europe/London", "Europe/Paris"), encoding="utf-8"
    )
    result = CliRunner().invoke(main, ["plan", "load", str(other), "--db", database_url])
    assert result.exit_code == 1
    assert "differs from TRACKER_TZ Europe/London" in result.stderr
