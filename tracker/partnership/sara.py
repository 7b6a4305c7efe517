"""Problem-solving plans (docs/partners.md, "SARA"): one per hot spot, edited by supervisors,
its actions updated by the agencies that own them, every change kept as a version and in the
audit log. Shared by the web app and the command line; never commits.

Partners read these plans, so no text may name an officer or a device: a text that holds an
officer's number or name or a device id is refused, and partners are shown each change's
agency, never the user who made it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.accounts.audit import record
from tracker.foundation import parsing
from tracker.foundation.models import Device, HotSpotRow, Officer, utc_now
from tracker.partnership.models import (
    ACTION_STATUSES,
    DONE,
    OPEN,
    PLAN_FIELDS,
    UNFINISHED,
    SaraAction,
    SaraActionUpdate,
    SaraPlan,
    SaraVersion,
)

POLICE = "Police"  # the agency of the force's own users, as partners are shown it
TEXT_LIMIT = 4_000  # a plan's text or an action's description
NAME_LIMIT = 200  # an agency or an owner (the columns)
NOTE_LIMIT = 2_000
ACTION_FIELDS = ("description", "owner_agency", "owner", "due_date", "status")
# Identifiers shorter than this are not looked for in texts: "12" would match any number.
SHORTEST_IDENTIFIER = 3
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")
_CONTROL_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e]")


class SaraError(ValueError):
    """A change to a problem-solving plan that cannot be made, with the reason."""


class NotFound(SaraError):
    """No such hot spot or action."""


class NotAllowed(SaraError):
    """The editor may not make this change (an action another agency owns)."""


class Conflict(SaraError):
    """The plan changed since the editor read it."""


@dataclass(frozen=True)
class Editor:
    """Who makes a change: `name` as the audit log records it (user, or "user (token N)"),
    and the agency partners are shown (None: the force's own users)."""

    name: str
    agency: str | None = None

    @property
    def shown_as(self) -> str:
        return self.agency or POLICE


def same_agency(one: str | None, other: str | None) -> bool:
    """Whether two agency names are the same organisation (case and spacing aside)."""
    if not one or not other:
        return False
    return " ".join(one.split()).casefold() == " ".join(other.split()).casefold()


# --- checking what is typed -----------------------------------------------------------------


def clean_text(value: Any, label: str, limit: int, *, lines: bool = True) -> str:
    """Return a text trimmed, or raise SaraError: too long, or holding control characters
    (line breaks and tabs only where `lines`). The message never quotes the text."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SaraError(f"{label}: expected text")
    text = value.strip()
    if len(text) > limit:
        raise SaraError(f"{label}: at most {limit:,} characters, not {len(text):,}")
    if (_CONTROL if lines else _CONTROL_ONE_LINE).search(text):
        raise SaraError(f"{label}: control characters are not allowed")
    return text


def _required(value: Any, label: str, limit: int, *, lines: bool = True) -> str:
    text = clean_text(value, label, limit, lines=lines)
    if not text:
        raise SaraError(f"{label}: required")
    return text


def parse_status(value: Any) -> str:
    if value not in ACTION_STATUSES:
        raise SaraError(f"status: one of {', '.join(ACTION_STATUSES)}")
    return value


def parse_due_date(value: Any) -> date:
    if isinstance(value, datetime):
        raise SaraError("due_date: a date (YYYY-MM-DD), not a time")
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = parsing.parse_day(value)
        except ValueError as exc:
            raise SaraError(f"due_date: {exc}") from None
    else:
        raise SaraError("due_date: required, as YYYY-MM-DD")
    try:
        return parsing.check_day(day)
    except ValueError as exc:
        raise SaraError(f"due_date: {exc}") from None


def identifiers_named(session: Session, texts: Mapping[str, str]) -> dict[str, list[str]]:
    """Return, per text, the officer numbers and names and device ids it holds (whole words,
    any case): partners read these plans, and must never be shown one."""
    known = set(session.scalars(select(Officer.id)))
    known |= {n for n in session.scalars(select(Officer.name)) if n}
    known |= set(session.scalars(select(Device.id)))
    words = sorted(
        (w.strip() for w in known if len(w.strip()) >= SHORTEST_IDENTIFIER), key=len, reverse=True
    )
    if not words or not any(texts.values()):
        return {}
    pattern = re.compile(
        r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE
    )
    found = {}
    for label, text in texts.items():
        hits = sorted({m.group(0) for m in pattern.finditer(text or "")})
        if hits:
            found[label] = hits
    return found


def _refuse_identifiers(session: Session, texts: Mapping[str, str]) -> None:
    found = identifiers_named(session, texts)
    if found:
        label, hits = next(iter(found.items()))
        raise SaraError(
            f"{label}: names an officer or a device ({', '.join(hits[:3])}); partners read "
            "this plan: name a role or a team instead"
        )


# --- reading ---------------------------------------------------------------------------------


def plan_for(session: Session, hotspot_id: str) -> SaraPlan | None:
    return session.scalar(select(SaraPlan).where(SaraPlan.hotspot_id == hotspot_id))


def hot_spot_of_action(session: Session, action_id: int) -> str | None:
    """Return the hot spot whose plan holds the action, None for no such action."""
    return session.scalar(
        select(SaraPlan.hotspot_id)
        .join(SaraAction, SaraAction.plan_id == SaraPlan.id)
        .where(SaraAction.id == action_id)
    )


def is_overdue(status: str, due_date: date, today: date) -> bool:
    """An action not yet done (nor cancelled) whose due date has passed; not on the day."""
    return status in UNFINISHED and due_date < today


def actions_of(session: Session, plan: SaraPlan) -> list[SaraAction]:
    return list(
        session.scalars(
            select(SaraAction)
            .where(SaraAction.plan_id == plan.id)
            .order_by(SaraAction.due_date, SaraAction.id)
        )
    )


def _updates_by_action(session: Session, action_ids: list[int]) -> dict[int, list]:
    updates: dict[int, list[SaraActionUpdate]] = {i: [] for i in action_ids}
    if action_ids:
        for update in session.scalars(
            select(SaraActionUpdate)
            .where(SaraActionUpdate.action_id.in_(action_ids))
            .order_by(SaraActionUpdate.at, SaraActionUpdate.id)
        ):
            updates[update.action_id].append(update)
    return updates


def plan_json(
    session: Session, hotspot_id: str, today: date, *, for_partner: bool, agency: str | None = None
) -> dict[str, Any]:
    """Return a hot spot's plan with its actions (each with its updates, overdue flagged, and
    whether `agency` may update it) and its versions, newest first. Partners are shown who
    changed what by agency only."""
    plan = plan_for(session, hotspot_id)
    if plan is None:
        return {
            "hotspot_id": hotspot_id,
            "version": 0,
            "updated_at": None,
            **dict.fromkeys(PLAN_FIELDS, ""),
            "actions": [],
            "versions": [],
        }
    actions = actions_of(session, plan)
    updates = _updates_by_action(session, [a.id for a in actions])
    versions = session.scalars(
        select(SaraVersion).where(SaraVersion.plan_id == plan.id).order_by(SaraVersion.version)
    ).all()
    return {
        "hotspot_id": hotspot_id,
        "version": plan.version,
        "updated_at": _iso(plan.updated_at),
        **{name: getattr(plan, name) for name in PLAN_FIELDS},
        "actions": [
            {
                "id": a.id,
                "description": a.description,
                "owner_agency": a.owner_agency,
                "owner": a.owner,
                "due_date": a.due_date.isoformat(),
                "status": a.status,
                "overdue": is_overdue(a.status, a.due_date, today),
                "yours": same_agency(agency, a.owner_agency),
                "updates": [
                    {
                        "at": _iso(u.at),
                        "by": u.author_agency if for_partner else u.author,
                        "agency": u.author_agency,
                        "status": u.status,
                        "note": u.note,
                    }
                    for u in updates[a.id]
                ],
            }
            for a in actions
        ],
        "versions": [
            {
                "version": v.version,
                "at": _iso(v.at),
                "by": v.actor_agency if for_partner else v.actor,
                "agency": v.actor_agency,
                "change": v.change,
                "action_id": v.action_id,
                "changes": v.changes,
            }
            for v in reversed(versions)
        ],
    }


SUMMARY_COLUMNS = [
    "hotspot_id",
    "hotspot_name",
    "version",
    "updated_at",
    "problem",
    "actions",
    "open",
    "overdue",
    "done",
]


def plans_table(
    session: Session, hotspot_ids: list[str], today: date, names: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Return one row per hot spot (SUMMARY_COLUMNS): its plan's version and problem, and its
    actions, open (open or in progress), overdue and done; version 0 for no plan yet."""
    plans = {p.hotspot_id: p for p in session.scalars(select(SaraPlan))}
    counts = action_counts(session, today)
    rows = []
    for hotspot_id in hotspot_ids:
        plan = plans.get(hotspot_id)
        count = counts.get(hotspot_id, {})
        rows.append(
            {
                "hotspot_id": hotspot_id,
                "hotspot_name": (names or {}).get(hotspot_id, ""),
                "version": plan.version if plan else 0,
                "updated_at": plan.updated_at if plan else None,
                "problem": plan.problem if plan else "",
                "actions": count.get("actions", 0),
                "open": count.get("open", 0),
                "overdue": count.get("overdue", 0),
                "done": count.get("done", 0),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def action_counts(session: Session, today: date) -> dict[str, dict[str, int]]:
    """Return per hot spot with a plan: its actions, and how many are open (open or in
    progress), overdue (open, past their due date) and done. For the overview's columns."""
    counts: dict[str, dict[str, int]] = {}
    rows = session.execute(
        select(SaraPlan.hotspot_id, SaraAction.status, SaraAction.due_date).join(
            SaraAction, SaraAction.plan_id == SaraPlan.id
        )
    )
    for hotspot_id, status, due in rows:
        count = counts.setdefault(hotspot_id, {"actions": 0, "open": 0, "overdue": 0, "done": 0})
        count["actions"] += 1
        count["open"] += status in UNFINISHED
        count["overdue"] += is_overdue(status, due, today)
        count["done"] += status == DONE
    return counts


AS_OF_COLUMNS = ["hotspot_id", "action_id", "owner_agency", "due_date", "status", "overdue"]


def actions_as_of(session: Session, moment: datetime, day: date) -> pd.DataFrame:
    """Return every action that existed at `moment` with its status then (from its dated
    updates) and whether it was overdue on `day` (AS_OF_COLUMNS): a past month's board report
    counts what stood at the month's end, not what stands now."""
    rows = session.execute(
        select(
            SaraPlan.hotspot_id,
            SaraAction.id,
            SaraAction.owner_agency,
            SaraAction.due_date,
            SaraActionUpdate.status,
        )
        .join(SaraAction, SaraAction.plan_id == SaraPlan.id)
        .join(SaraActionUpdate, SaraActionUpdate.action_id == SaraAction.id)
        .where(SaraActionUpdate.at <= moment)
        .order_by(SaraAction.id, SaraActionUpdate.at, SaraActionUpdate.id)
    ).all()
    latest = {row[1]: row for row in rows}  # each action's last update by then
    table = [
        {
            "hotspot_id": hotspot_id,
            "action_id": action_id,
            "owner_agency": agency,
            "due_date": due,
            "status": status,
            "overdue": is_overdue(status, due, day),
        }
        for hotspot_id, action_id, agency, due, status in latest.values()
    ]
    return pd.DataFrame(table, columns=AS_OF_COLUMNS)


# --- changing --------------------------------------------------------------------------------


def _plan_to_change(session: Session, hotspot_id: str, at: datetime) -> SaraPlan:
    """Return the hot spot's plan, starting one for a stored hot spot that has none."""
    plan = plan_for(session, hotspot_id)
    if plan is not None:
        return plan
    if session.get(HotSpotRow, hotspot_id) is None:
        raise NotFound(f"no hot spot {parsing.shortened(hotspot_id)}")
    plan = SaraPlan(
        hotspot_id=hotspot_id,
        version=0,
        created_at=at,
        updated_at=at,
        **dict.fromkeys(PLAN_FIELDS, ""),
    )
    session.add(plan)
    session.flush()
    return plan


def _new_version(
    session: Session,
    plan: SaraPlan,
    editor: Editor,
    change: str,
    changes: dict[str, Any],
    action_id: int | None,
    now: datetime,
) -> None:
    """Record a version of the plan (as made `now`) and the matching audit event (as
    recorded: the audit log keeps when a change was entered)."""
    plan.version += 1
    # A change recorded after the fact (`at`) never moves the plan's last change back.
    plan.updated_at = max(plan.updated_at, now) if plan.updated_at else now
    session.add(
        SaraVersion(
            plan_id=plan.id,
            version=plan.version,
            at=now,
            actor=editor.name,
            actor_agency=editor.shown_as,
            change=change,
            action_id=action_id,
            changes=changes,
        )
    )
    before = {k: v["before"] for k, v in changes.items() if isinstance(v, dict)}
    after = {k: v["after"] for k, v in changes.items() if isinstance(v, dict)}
    after |= {k: v for k, v in changes.items() if not isinstance(v, dict)}
    if action_id is not None:
        before["action"] = after["action"] = action_id
    record(session, editor.name, f"sara.{change}", f"sara {plan.hotspot_id}", before or None, after)


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, dict]:
    return {
        key: {"before": _plain(old.get(key)), "after": _plain(value)}
        for key, value in new.items()
        if old.get(key) != value
    }


def save_plan(
    session: Session,
    hotspot_id: str,
    fields: Mapping[str, Any],
    editor: Editor,
    *,
    version: int | None = None,
    at: datetime | None = None,
) -> tuple[SaraPlan, bool]:
    """Change the plan's texts given in `fields` (PLAN_FIELDS; others are refused); return the
    plan and whether anything changed. With `version`, refuse (Conflict) if the plan has
    changed since that version was read. `at`: when the change was made (default now; a
    record of earlier work)."""
    unknown = sorted(set(fields) - set(PLAN_FIELDS))
    if unknown:
        raise SaraError(f"unknown fields: {', '.join(parsing.shortened(u) for u in unknown)}")
    texts = {name: clean_text(fields[name], name, TEXT_LIMIT) for name in fields}
    _refuse_identifiers(session, texts)
    at = at or utc_now()
    plan = _plan_to_change(session, hotspot_id, at)
    if version is not None and version != plan.version:
        raise Conflict(
            f"the plan has changed since you opened it (version {version}, now "
            f"{plan.version}): reload it and make your change again"
        )
    changes = _differences({n: getattr(plan, n) for n in texts}, texts)
    if not changes:
        return plan, False
    for name, change in changes.items():
        setattr(plan, name, change["after"])
    _new_version(session, plan, editor, "plan", changes, None, at)
    return plan, True


def add_action(
    session: Session,
    hotspot_id: str,
    editor: Editor,
    *,
    description: Any,
    owner_agency: Any,
    owner: Any,
    due_date: Any,
    status: Any = OPEN,
    note: Any = "",
    at: datetime | None = None,
) -> SaraAction:
    """Add a response to the hot spot's plan (starting the plan if it has none); `at` as
    for save_plan."""
    values = {
        "description": _required(description, "description", TEXT_LIMIT),
        "owner_agency": _required(owner_agency, "owner_agency", NAME_LIMIT, lines=False),
        "owner": _required(owner, "owner", NAME_LIMIT, lines=False),
        "due_date": parse_due_date(due_date),
        "status": parse_status(status),
    }
    note = clean_text(note, "note", NOTE_LIMIT)
    _refuse_identifiers(session, {**_texts(values), "note": note})
    now = at or utc_now()
    plan = _plan_to_change(session, hotspot_id, now)
    action = SaraAction(plan_id=plan.id, created_at=now, updated_at=now, **values)
    session.add(action)
    session.flush()
    _add_update(session, action, editor, note, now)
    changes = {"action": action.id, **{k: _plain(v) for k, v in values.items()}}
    if note:
        changes["note"] = note
    _new_version(session, plan, editor, "action.add", changes, action.id, now)
    return action


def update_action(
    session: Session,
    action_id: int,
    editor: Editor,
    changes: Mapping[str, Any],
    note: Any = "",
    at: datetime | None = None,
) -> tuple[SaraAction, bool]:
    """Change any of an action's ACTION_FIELDS given in `changes`, with an optional note (a
    dated update); return the action and whether anything changed. For supervisors; `at` as
    for save_plan."""
    action = _action(session, action_id)
    unknown = sorted(set(changes) - set(ACTION_FIELDS))
    if unknown:
        raise SaraError(f"unknown fields: {', '.join(parsing.shortened(u) for u in unknown)}")
    parsers = {
        "description": lambda v: _required(v, "description", TEXT_LIMIT),
        "owner_agency": lambda v: _required(v, "owner_agency", NAME_LIMIT, lines=False),
        "owner": lambda v: _required(v, "owner", NAME_LIMIT, lines=False),
        "due_date": parse_due_date,
        "status": parse_status,
    }
    values = {name: parsers[name](value) for name, value in changes.items()}
    note = clean_text(note, "note", NOTE_LIMIT)
    _refuse_identifiers(session, {**_texts(values), "note": note})
    return action, _change_action(session, action, editor, values, note, at or utc_now())


def partner_update(
    session: Session,
    action_id: int,
    editor: Editor,
    *,
    status: Any,
    note: Any,
    at: datetime | None = None,
) -> SaraAction:
    """A partner's update of an action its agency owns: the status, and a note saying what
    was done (required)."""
    action = _action(session, action_id)
    if not same_agency(editor.agency, action.owner_agency):
        raise NotAllowed(
            f"action {action.id} is owned by {action.owner_agency}: only that agency, or a "
            "supervisor, may update it"
        )
    values = {"status": parse_status(status)}
    note = _required(note, "note", NOTE_LIMIT)
    _refuse_identifiers(session, {"note": note})
    _change_action(session, action, editor, values, note, at or utc_now())
    return action


def _action(session: Session, action_id: int) -> SaraAction:
    action = session.get(SaraAction, action_id)
    if action is None:
        raise NotFound(f"no action {action_id}")
    return action


def _texts(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: v for k, v in values.items() if isinstance(v, str)}


def _change_action(
    session: Session,
    action: SaraAction,
    editor: Editor,
    values: dict[str, Any],
    note: str,
    now: datetime,
) -> bool:
    changes = _differences({n: getattr(action, n) for n in values}, values)
    if not changes and not note:
        return False
    for name in changes:
        setattr(action, name, values[name])
    action.updated_at = now
    _add_update(session, action, editor, note, now)
    if note:
        changes["note"] = note
    plan = session.get(SaraPlan, action.plan_id)
    _new_version(session, plan, editor, "action.update", changes, action.id, now)
    return True


def _add_update(
    session: Session, action: SaraAction, editor: Editor, note: str, at: datetime
) -> None:
    session.add(
        SaraActionUpdate(
            action_id=action.id,
            at=at,
            author=editor.name,
            author_agency=editor.shown_as,
            status=action.status,
            note=note,
        )
    )


# --- export ----------------------------------------------------------------------------------

EXPORT_COLUMNS = [
    "hotspot_id",
    "version",
    "updated_at",
    *PLAN_FIELDS,
    "action_id",
    "description",
    "owner_agency",
    "owner",
    "due_date",
    "status",
    "overdue",
    "last_update_at",
    "last_update_by",
    "last_update_note",
]


def export_plans(session: Session, today: date, hotspot_id: str | None = None) -> list[dict]:
    """Return every plan (or the hot spot's) as plan_json gives it to supervisors, by hot spot."""
    statement = select(SaraPlan.hotspot_id).order_by(SaraPlan.hotspot_id)
    if hotspot_id is not None:
        statement = statement.where(SaraPlan.hotspot_id == hotspot_id)
    return [plan_json(session, h, today, for_partner=False) for h in session.scalars(statement)]


def export_table(plans: list[dict]) -> pd.DataFrame:
    """Return plans (export_plans) as one row per action (EXPORT_COLUMNS), the plan's texts
    repeated on each; a plan without actions is one row with the action's columns blank."""
    rows = []
    for plan in plans:
        base = {k: plan.get(k) for k in ("hotspot_id", "version", "updated_at", *PLAN_FIELDS)}
        for action in plan["actions"] or [None]:
            row = dict(base)
            if action is not None:
                last = action["updates"][-1] if action["updates"] else {}
                row |= {
                    "action_id": action["id"],
                    **{k: action[k] for k in ("description", "owner_agency", "owner")},
                    **{k: action[k] for k in ("due_date", "status", "overdue")},
                    "last_update_at": last.get("at"),
                    "last_update_by": last.get("by"),
                    "last_update_note": last.get("note"),
                }
            rows.append(row)
    return pd.DataFrame(rows, columns=EXPORT_COLUMNS)


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
