"""Storing a plan and reading it back: the operation, its hot spots and phases, audited."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.foundation.clock import local_today
from tracker.foundation.models import HotSpotRow, utc_now
from tracker.plan.models import Operation, OperationHotSpot, PlanPhase
from tracker.plan.targets import (
    PRESENCE_PER_DAY,
    PRESENCE_PER_WEEK,
    PatrolWindow,
    Phase,
    Plan,
    PlanError,
)

PLAN_COLUMNS = [
    "operation",
    "hotspot_id",
    "from",
    "to",
    PRESENCE_PER_DAY,
    PRESENCE_PER_WEEK,
    "visits_per_day",
    "min_visit_minutes",
    "max_presence_minutes_per_day",
    "windows",
]


def load_plan(session: Session, plan: Plan, actor: str) -> Operation:
    """Create the operation or replace its plan; audited with before/after when it changes.

    Every hot spot must be in the stored hot spot set (PlanError names the line otherwise).
    """
    known = set(session.scalars(select(HotSpotRow.id)))
    unknown = sorted(
        (h for h in plan.hotspot_ids if h not in known), key=lambda h: plan.hotspot_lines.get(h, 0)
    )
    if unknown:
        raise PlanError(
            "\n".join(
                f"{plan.source}: line {plan.hotspot_lines.get(h, 1)}: hotspots.{h}: unknown hot "
                "spot (not in the stored hot spot set; load the geofences first)"
                for h in unknown
            )
        )
    operation = session.scalar(select(Operation).where(Operation.name == plan.name))
    before = stored_plan(session, operation).summary() if operation else None
    after = plan.summary()
    if before == after:
        return operation
    now = utc_now()
    if operation is None:
        operation = Operation(
            name=plan.name,
            start_date=plan.start_date,
            end_date=plan.end_date,
            tz=plan.tz,
            created_at=now,
        )
        session.add(operation)
    operation.start_date, operation.end_date, operation.tz = plan.start_date, plan.end_date, plan.tz
    operation.updated_at = now
    session.flush()
    for model in (PlanPhase, OperationHotSpot):
        session.execute(delete(model).where(model.operation_id == operation.id))
    session.add_all(
        OperationHotSpot(operation_id=operation.id, hotspot_id=h) for h in plan.hotspot_ids
    )
    session.add_all(
        PlanPhase(
            operation_id=operation.id,
            hotspot_id=p.hotspot_id,
            starts=p.starts,
            ends=p.ends,
            presence_minutes_per_day=p.presence_minutes_per_day,
            presence_minutes_per_week=p.presence_minutes_per_week,
            visits_per_day=p.visits_per_day,
            min_visit_minutes=p.min_visit_minutes,
            max_presence_minutes_per_day=p.max_presence_minutes_per_day,
            windows=[w.to_json() for w in p.windows] or None,
        )
        for p in plan.phases
    )
    session.flush()
    record(session, actor, "plan.load", f"operation {plan.name}", before, after)
    return operation


def stored_plan(session: Session, operation: Operation) -> Plan:
    """Return the stored plan of an operation."""
    hotspot_ids = session.scalars(
        select(OperationHotSpot.hotspot_id)
        .where(OperationHotSpot.operation_id == operation.id)
        .order_by(OperationHotSpot.hotspot_id)
    ).all()
    rows = session.scalars(
        select(PlanPhase)
        .where(PlanPhase.operation_id == operation.id)
        .order_by(PlanPhase.hotspot_id, PlanPhase.starts)
    ).all()
    phases = tuple(
        Phase(
            r.hotspot_id,
            r.starts,
            r.ends,
            r.presence_minutes_per_day,
            r.presence_minutes_per_week,
            r.visits_per_day,
            r.min_visit_minutes,
            r.max_presence_minutes_per_day,
            tuple(PatrolWindow.from_json(w) for w in r.windows or ()),
        )
        for r in rows
    )
    return Plan(
        operation.name,
        operation.start_date,
        operation.end_date,
        operation.tz,
        tuple(hotspot_ids),
        phases,
        source=f"operation {operation.name}",
    )


def operation_day(operation: Operation, day: date) -> int:
    """Return N for "day N of the operation" (1 on the start date)."""
    return (day - operation.start_date).days + 1


def find_operation(
    session: Session, name: str | None = None, now: datetime | None = None
) -> Operation:
    """Return the named operation, else the one running today, else the latest to start."""
    if name is not None:
        operation = session.scalar(select(Operation).where(Operation.name == name))
        if operation is None:
            raise PlanError(f"no operation named {name!r}")
        return operation
    operations = session.scalars(
        select(Operation).order_by(Operation.start_date.desc(), Operation.id.desc())
    ).all()
    if not operations:
        raise PlanError("no operation plan is loaded: run `python -m tracker plan load FILE`")
    running = [o for o in operations if o.start_date <= local_today(o.tz, now) <= o.end_date]
    return (running or operations)[0]


def plan_table(plan: Plan) -> pd.DataFrame:
    """Return the phases of a plan (PLAN_COLUMNS), one row per hot spot phase."""
    rows = [{"operation": plan.name, **p.summary()} for p in plan.phases]
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    frame["from"] = [date.fromisoformat(d) for d in frame["from"]]
    frame["to"] = [date.fromisoformat(d) for d in frame["to"]]
    return frame
