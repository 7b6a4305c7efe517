"""Problem-solving plans (docs/partners.md, "SARA"): versions and the audit of every change,
dated action updates and what stood on a past day, overdue actions, a partner's updates of
its own agency's actions only, texts that may not name an officer or a device, the export
command, and partner users with their agency. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tracker.accounts.users import UserError, create_user
from tracker.cli import main
from tracker.foundation.models import AuditEvent, Device, HotSpotRow, Officer, User
from tracker.partnership.models import SaraVersion
from tracker.partnership.sara import (
    Conflict,
    Editor,
    NotAllowed,
    NotFound,
    SaraError,
    action_counts,
    actions_as_of,
    add_action,
    export_plans,
    export_table,
    partner_update,
    plan_json,
    plans_table,
    save_plan,
    update_action,
)

SUPERVISOR = Editor("sam")
COUNCIL = Editor("cara", "Leicester City Council")
NHS = Editor("nina", "NHS Leicester")
PASSWORD = "correct horse battery staple"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def sessions(db):
    """The database with hot spots A and B, an officer and a device."""
    with db.begin() as session:
        for hotspot_id in ("A", "B"):
            session.add(
                HotSpotRow(id=hotspot_id, name=f"Spot {hotspot_id}", geometry={}, properties={})
            )
        session.add(Officer(id="PC101", name="Jane Smith"))
        session.add(Device(id="radio-007"))
    return db


def audit(session, action: str) -> list[AuditEvent]:
    return list(
        session.scalars(
            select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        )
    )


def add_lights(session, **overrides):
    values = {
        "description": "Repair the street lights on the footpath",
        "owner_agency": "Leicester City Council",
        "owner": "Street lighting team",
        "due_date": "2026-03-10",
        "at": T0,
    }
    return add_action(session, "A", SUPERVISOR, **{**values, **overrides})


def test_each_change_of_a_plan_is_a_version_with_its_audit_event(sessions):
    with sessions.begin() as session:
        plan, changed = save_plan(
            session, "A", {"problem": "Robbery at night", "harm": "Injuries"}, SUPERVISOR
        )
        assert (changed, plan.version) == (True, 1)
    with sessions.begin() as session:
        plan, changed = save_plan(session, "A", {"problem": "Robbery at night"}, SUPERVISOR)
        assert (changed, plan.version) == (False, 1)  # the same text: nothing changed
        plan, changed = save_plan(
            session, "A", {"problem": "Robbery and assault at night"}, COUNCIL, version=1
        )
        assert (changed, plan.version) == (True, 2)
    with sessions() as session:
        versions = session.scalars(select(SaraVersion).order_by(SaraVersion.version)).all()
        events = audit(session, "sara.plan")
    assert [(v.version, v.actor, v.actor_agency, v.change) for v in versions] == [
        (1, "sam", "Police", "plan"),
        (2, "cara", "Leicester City Council", "plan"),
    ]
    assert versions[0].changes == {
        "problem": {"before": "", "after": "Robbery at night"},
        "harm": {"before": "", "after": "Injuries"},
    }
    assert versions[1].changes == {
        "problem": {"before": "Robbery at night", "after": "Robbery and assault at night"}
    }
    assert [(e.actor, e.subject, e.before, e.after) for e in events] == [
        (
            "sam",
            "sara A",
            {"problem": "", "harm": ""},
            {"problem": "Robbery at night", "harm": "Injuries"},
        ),
        (
            "cara",
            "sara A",
            {"problem": "Robbery at night"},
            {"problem": "Robbery and assault at night"},
        ),
    ]


def test_a_change_made_on_an_older_version_is_refused(sessions):
    with sessions.begin() as session:
        save_plan(session, "A", {"problem": "Robbery"}, SUPERVISOR)
        save_plan(session, "A", {"harm": "Injuries"}, SUPERVISOR)
    with sessions.begin() as session, pytest.raises(Conflict, match="version 1, now 2"):
        save_plan(session, "A", {"problem": "Something else"}, SUPERVISOR, version=1)


def test_actions_are_overdue_after_their_due_date_until_done_and_their_past_is_kept(sessions):
    with sessions.begin() as session:
        action = add_lights(session)
        action_id = action.id
    with sessions.begin() as session:
        partner_update(
            session,
            action_id,
            COUNCIL,
            status="in_progress",
            note="Survey booked",
            at=T0 + timedelta(days=3),
        )
        update_action(
            session, action_id, SUPERVISOR, {"status": "done"}, at=T0 + timedelta(days=12)
        )
    with sessions() as session:
        # On its due date an unfinished action is not yet overdue; the day after it is.
        stood = {
            (day, moment): actions_as_of(session, moment, day).to_dict("records")
            for day, moment in [
                (date(2026, 3, 1), T0 - timedelta(hours=1)),
                (date(2026, 3, 4), T0 + timedelta(days=3, hours=1)),
                (date(2026, 3, 10), T0 + timedelta(days=8)),
                (date(2026, 3, 11), T0 + timedelta(days=9)),
                (date(2026, 3, 15), T0 + timedelta(days=13)),
            ]
        }
        plan = plan_json(session, "A", date(2026, 3, 15), for_partner=False)
    assert [[(r["status"], r["overdue"]) for r in rows] for rows in stood.values()] == [
        [],
        [("in_progress", False)],
        [("in_progress", False)],
        [("in_progress", True)],
        [("done", False)],
    ]
    [shown] = plan["actions"]
    assert [(u["status"], u["by"], u["note"]) for u in shown["updates"]] == [
        ("open", "sam", ""),
        ("in_progress", "cara", "Survey booked"),
        ("done", "sam", ""),
    ]
    assert plan["version"] == 3
    assert [v["change"] for v in plan["versions"]] == [
        "action.update",
        "action.update",
        "action.add",
    ]


def test_open_and_overdue_actions_are_counted_per_hot_spot(sessions):
    with sessions.begin() as session:
        add_lights(session, due_date="2026-03-10")
        add_lights(session, due_date="2026-03-20", status="in_progress")
        add_lights(session, due_date="2026-03-01", status="done")
        add_lights(session, due_date="2026-03-01", status="cancelled")
    with sessions() as session:
        counts = action_counts(session, date(2026, 3, 15))
        table = plans_table(session, ["A", "B"], date(2026, 3, 15), {"A": "Spot A"})
    assert counts == {"A": {"actions": 4, "open": 2, "overdue": 1, "done": 1}}
    assert table[["hotspot_id", "version", "open", "overdue", "done"]].to_dict("records") == [
        {"hotspot_id": "A", "version": 4, "open": 2, "overdue": 1, "done": 1},
        {"hotspot_id": "B", "version": 0, "open": 0, "overdue": 0, "done": 0},
    ]


def test_a_partner_updates_only_its_own_agencys_actions_and_says_what_was_done(sessions):
    with sessions.begin() as session:
        action_id = add_lights(session).id
    with sessions.begin() as session, pytest.raises(NotAllowed, match="Leicester City Council"):
        partner_update(session, action_id, NHS, status="done", note="Done")
    with sessions.begin() as session, pytest.raises(SaraError, match="note: required"):
        partner_update(session, action_id, COUNCIL, status="done", note="  ")
    with sessions.begin() as session, pytest.raises(SaraError, match="status: one of"):
        partner_update(session, action_id, COUNCIL, status="finished", note="Done")
    with sessions.begin() as session:
        # The same agency, however it is typed.
        partner_update(
            session,
            action_id,
            Editor("cara", "leicester  city council"),
            status="done",
            note="Fixed",
        )
    with sessions() as session:
        plan = plan_json(
            session, "A", date(2026, 3, 4), for_partner=True, agency="Leicester City Council"
        )
    assert plan["actions"][0]["status"] == "done"
    assert plan["actions"][0]["yours"] is True
    # Partners are shown an agency, never the user who made the change.
    assert [u["by"] for u in plan["actions"][0]["updates"]] == ["Police", "leicester  city council"]
    assert {v["by"] for v in plan["versions"]} == {"Police", "leicester  city council"}
    assert "sam" not in json.dumps(plan) and "cara" not in json.dumps(plan)


@pytest.mark.parametrize(
    ("field", "text"),
    [
        ("evidence", "Seen by PC101 on patrol"),
        ("evidence", "seen by pc101"),
        ("offender", "Reported to Jane Smith"),
        ("place", "Where radio-007 was left"),
    ],
)
def test_no_text_of_a_plan_may_name_an_officer_or_a_device(sessions, field, text):
    with (
        sessions.begin() as session,
        pytest.raises(SaraError, match="names an officer or a device"),
    ):
        save_plan(session, "A", {field: text}, SUPERVISOR)


def test_a_longer_word_holding_an_officers_number_is_not_taken_for_it(sessions):
    with sessions.begin() as session:
        _, changed = save_plan(session, "A", {"evidence": "Incident PC1012 and XPC101"}, SUPERVISOR)
    assert changed


def test_notes_and_owners_may_not_name_an_officer_either(sessions):
    with sessions.begin() as session:
        action_id = add_lights(session).id
    with sessions.begin() as session, pytest.raises(SaraError, match="owner: names"):
        add_lights(session, owner="PC101")
    with sessions.begin() as session, pytest.raises(SaraError, match="note: names"):
        partner_update(session, action_id, COUNCIL, status="done", note="Done with Jane Smith")


def test_texts_are_bounded_and_hold_no_control_characters_and_are_never_quoted(sessions):
    long = "x" * 4_001
    with sessions.begin() as session:
        with pytest.raises(SaraError) as error:
            save_plan(session, "A", {"problem": long}, SUPERVISOR)
        assert str(error.value) == "problem: at most 4,000 characters, not 4,001"
        with pytest.raises(SaraError, match="control characters"):
            save_plan(session, "A", {"problem": "robbery\x00"}, SUPERVISOR)
        with pytest.raises(SaraError, match="owner: control characters"):
            add_lights(session, owner="Street\nlighting")
        with pytest.raises(SaraError, match="due_date: 2100-01-01 is outside the dates handled"):
            add_lights(session, due_date="2100-01-01")
        with pytest.raises(SaraError, match="unknown fields"):
            save_plan(session, "A", {"version": "3"}, SUPERVISOR)
    with sessions() as session:
        assert session.scalars(select(SaraVersion)).all() == []


def test_a_plan_needs_a_stored_hot_spot_and_an_action_a_stored_action(sessions):
    with sessions.begin() as session:
        with pytest.raises(NotFound, match="no hot spot 'Z'"):
            save_plan(session, "Z", {"problem": "x"}, SUPERVISOR)
        with pytest.raises(NotFound, match="no action 99"):
            partner_update(session, 99, COUNCIL, status="done", note="x")


def test_the_export_has_a_row_per_action_and_every_plan_in_json(sessions, database_url):
    with sessions.begin() as session:
        save_plan(session, "A", {"problem": "Robbery at night"}, SUPERVISOR, at=T0)
        add_lights(session)
        add_lights(session, description="Youth outreach", owner_agency="Violence Reduction Network")
        save_plan(session, "B", {"problem": "Drug dealing"}, SUPERVISOR, at=T0)
    runner = CliRunner()
    as_csv = runner.invoke(main, ["sara", "export", "--db", database_url])
    as_json = runner.invoke(
        main, ["sara", "export", "--hotspot", "A", "--format", "json", "--db", database_url]
    )
    missing = runner.invoke(main, ["sara", "export", "--hotspot", "Q", "--db", database_url])

    assert as_csv.exit_code == 0, as_csv.output
    lines = as_csv.output.splitlines()
    assert lines[0].startswith("hotspot_id,version,updated_at,problem,harm,")
    assert [line.split(",")[0] for line in lines[1:]] == ["A", "A", "B"]
    assert "Youth outreach,Violence Reduction Network" in as_csv.output
    assert as_json.exit_code == 0, as_json.output
    [plan] = json.loads(as_json.output)
    assert plan["problem"] == "Robbery at night"
    assert [a["description"] for a in plan["actions"]] == [
        "Repair the street lights on the footpath",
        "Youth outreach",
    ]
    assert plan["versions"][0]["by"] == "sam"  # the force's own export names its users
    assert missing.exit_code == 1
    assert "no problem-solving plan for hot spot 'Q'" in missing.output
    with sessions() as session:
        table = export_table(export_plans(session, date(2026, 3, 15)))
    assert table["overdue"].tolist()[:2] == [True, True]
    assert table["action_id"].isna().tolist() == [False, False, True]  # B: a plan, no action


def test_a_partner_user_needs_an_agency(sessions, database_url):
    runner = CliRunner()
    created = runner.invoke(
        main,
        [
            "users",
            "create",
            "cara",
            "--role",
            "partner",
            "--agency",
            " Leicester City Council ",
            "--password-stdin",
            "--db",
            database_url,
        ],
        input=PASSWORD + "\n",
    )
    refused = runner.invoke(
        main,
        ["users", "create", "nina", "--role", "partner", "--password-stdin", "--db", database_url],
        input=PASSWORD + "\n",
    )
    assert created.exit_code == 0, created.output
    assert refused.exit_code == 1
    assert "a partner user needs --agency NAME" in refused.output
    with sessions.begin() as session:
        users = {u.username: (u.role, u.agency) for u in session.scalars(select(User))}
        [event] = audit(session, "user.create")
        with pytest.raises(UserError, match="printable"):
            create_user(session, "pat", "partner", PASSWORD, agency="City\nCouncil")
        # An agency means nothing for another role: it is not stored.
        create_user(session, "sue", "supervisor", PASSWORD, agency="Council")
    assert users == {"cara": ("partner", "Leicester City Council")}
    assert event.after == {
        "role": "partner",
        "officer_id": None,
        "agency": "Leicester City Council",
    }
    with sessions() as session:
        assert session.scalar(select(User.agency).where(User.username == "sue")) is None
