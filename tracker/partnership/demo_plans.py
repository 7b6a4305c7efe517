"""Problem-solving plans for the demonstration hot spots (`make demo`): invented, like the hot
spots themselves, so that the plan pages, the partners' view and the board report have
something to show. Each plan was written on the operation's first day and its actions have
moved since: some done, some in progress, some open, one or two overdue, one cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.partnership.models import CANCELLED, DONE, IN_PROGRESS, OPEN, SaraPlan
from tracker.partnership.sara import Editor, add_action, partner_update, save_plan, update_action

DEMO_PARTNER_AGENCY = "Leicester City Council"  # the demo partner user's agency
POLICE_EDITOR = Editor("demo")
COUNCIL, VRN, HEALTH, POLICE = (
    DEMO_PARTNER_AGENCY,
    "Violence Reduction Network",
    "NHS Leicester, Leicestershire and Rutland",
    "Police",
)

PROBLEMS = (
    {
        "problem": "Street robbery and assaults on people leaving the evening economy, mostly "
        "between 22:00 and 03:00 on Fridays and Saturdays.",
        "harm": "Injuries needing hospital treatment; people avoid the area at night.",
        "offender": "Small groups of young men, some known for drug supply nearby.",
        "victim": "Lone people walking to taxi ranks and car parks after a night out.",
        "place": "Poorly lit cut-throughs between the bars and the taxi rank; no guardian "
        "after the late bars close.",
        "evidence": "Recorded violence and robbery by hour and day; ambulance call-outs; a "
        "walk-through with the licensing team.",
        "measures": "Violence with injury and robbery per month against the same months last "
        "year and the rest of the city; ambulance call-outs at night.",
    },
    {
        "problem": "Knife-enabled robbery of school-age young people on the route home from "
        "school, 15:00 to 18:00 on weekdays.",
        "harm": "Fear among pupils and parents; two serious stabbings last year.",
        "offender": "Older teenagers from outside the area, arriving by bus.",
        "victim": "Pupils of two secondary schools carrying phones and bank cards.",
        "place": "The bus interchange and the underpass beside it.",
        "evidence": "Robbery reports with the victim's age; school incident logs; CCTV review.",
        "measures": "Robbery of under-18s per month; pupils' reported feeling of safety "
        "(school survey).",
    },
    {
        "problem": "Open drug dealing and related violence around the shopping parade.",
        "harm": "Assaults between dealing groups; discarded needles; shops losing trade.",
        "offender": "A county-lines group using local young people to deal.",
        "victim": "Shop staff and customers; young people exploited to deal.",
        "place": "Rear service yard and alley with no natural surveillance.",
        "evidence": "Drug and weapon possession records; intelligence; business survey.",
        "measures": "Violence and drug offences per month; needle finds; business survey "
        "repeated after six months.",
    },
)

# (description, agency, owner, due in days from the start, state, days in which it moved)
ACTIONS = (
    (
        "Targeted foot patrols in the plan's patrol windows, 10-15 minutes at a time.",
        POLICE,
        "Neighbourhood policing team",
        60,
        IN_PROGRESS,
        2,
    ),
    (
        "Repair and brighten the street lighting along the cut-through.",
        COUNCIL,
        "Street lighting team",
        10,
        IN_PROGRESS,
        4,
    ),
    (
        "Youth outreach sessions on Friday and Saturday evenings.",
        VRN,
        "Youth outreach coordinator",
        7,
        DONE,
        5,
    ),
    (
        "Cut back the vegetation that hides the path from the road.",
        COUNCIL,
        "Parks and open spaces team",
        9,
        OPEN,
        None,
    ),
    (
        "Share anonymised A&E assault data for the area each month.",
        HEALTH,
        "Information sharing lead",
        21,
        OPEN,
        None,
    ),
    (
        "Install a temporary CCTV camera at the entrance to the alley.",
        COUNCIL,
        "Community safety CCTV team",
        5,
        CANCELLED,
        3,
    ),
)
NOTES = {
    IN_PROGRESS: "Work started; first results expected within the month.",
    DONE: "Completed as planned.",
    CANCELLED: "Replaced by the lighting work, which covers the same place.",
}


@dataclass(frozen=True)
class Seeded:
    plans: int
    actions: int


def seed_demo_plans(
    session: Session, hotspot_ids: Sequence[str], first_day: date, tz: str
) -> Seeded:
    """Write a problem-solving plan for each hot spot that has none, as written on
    `first_day` (09:00 local) by supervisors, with 3 to 5 actions each, some since updated by
    their agencies. Idempotent: hot spots with a plan are left as they are."""
    zone = ZoneInfo(tz)
    have = set(session.scalars(select(SaraPlan.hotspot_id)))
    written = datetime.combine(first_day, time(9), zone)
    now = datetime.now(UTC)
    plans = actions = 0
    moves = []  # (when, action, agency, state): made after every action is written
    for n, hotspot_id in enumerate(h for h in hotspot_ids if h not in have):
        save_plan(session, hotspot_id, PROBLEMS[n % len(PROBLEMS)], POLICE_EDITOR, at=written)
        plans += 1
        chosen = [ACTIONS[(n + k) % len(ACTIONS)] for k in range(3 + n % 3)]
        for k, (text, agency, owner, due_in, state, moved_in) in enumerate(chosen):
            added = written + timedelta(minutes=10 * (k + 1))
            action = add_action(
                session,
                hotspot_id,
                POLICE_EDITOR,
                description=text,
                owner_agency=agency,
                owner=owner,
                due_date=first_day + timedelta(days=due_in),
                at=added,
            )
            actions += 1
            if moved_in is not None and state != OPEN:
                moves.append((added + timedelta(days=moved_in, hours=n), action.id, agency, state))
    for moved, action_id, agency, state in sorted(moves):
        if moved > now:
            continue  # an operation that began lately has not got so far
        if agency == POLICE:
            changes = {"status": state}
            update_action(session, action_id, POLICE_EDITOR, changes, NOTES[state], at=moved)
        else:
            editor = Editor("demo", agency)
            partner_update(session, action_id, editor, status=state, note=NOTES[state], at=moved)
    return Seeded(plans, actions)
