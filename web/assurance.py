"""Stop and search assurance pages: the BWV review queue and figures, records, review.

Assurance leads and admins review and record stops; supervisors read; an officer sees only
their own records (every check is made here, on the server). The JSON API over the same
records is web/stops_api.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

import pandas as pd
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user
from sqlalchemy.orm import Session

from tracker.accounts.audit import events_about
from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.store import stored_hot_spots
from tracker.foundation import settings
from tracker.foundation.models import AuditEvent
from tracker.stops.figures import (
    action_dict,
    actions_frame,
    assurance_tables,
    export_stops,
    review_quality,
    review_states,
    stops_frame,
)
from tracker.stops.models import (
    CAMERA_COVERAGE,
    GOWISELY_ANSWERS,
    GRADES,
    RAG_RATINGS,
    REVIEW_OUTCOMES,
    REVIEW_STATUSES,
    BwvReview,
    StopSearch,
)
from tracker.stops.population import PopulationError, load_group_population, load_population
from tracker.stops.records import (
    LABELS,
    SEARCH_TYPES,
    STOP_FIELDS,
    WHITE_PREFIX,
    ReviewError,
    StopValidationError,
    create_stop,
    stop_subject,
)
from tracker.stops.review import (
    COMPLETED,
    acknowledge,
    actions_of,
    add_action,
    is_overdue,
    review_of,
    second_review,
    set_action_status,
    update_review,
)
from tracker.stops.scrutiny import scrutiny_pack
from tracker.stops.search_figures import SMALL_NUMBER, panel_tables, presence_hours
from web import maps
from web.assurance_labels import (
    ASSESSMENT_LABELS,
    BREAKDOWN_COLUMNS,
    CAMERA_LABELS,
    GOWISELY_LABELS,
    GRADE_LABELS,
    MINE_TABLE,
    OUTCOME_LABELS,
    POPULATION_COLUMNS,
    QUEUE_DISPLAY_LIMIT,
    QUEUE_TABLE,
    REVIEW_FORM_FIELDS,
    REVIEW_STATE_COLOURS,
    STATUS_LABELS,
    SUGGESTIONS,
)
from web.auth import roles_required
from web.database import get_db
from web.security import script_nonce
from web.views import (
    csv_response,
    download_response,
    hot_spot_bounds,
    params,
    period,
    table_rows,
    today,
    wants_csv,
)

blueprint = Blueprint("assurance", __name__, url_prefix="/assurance")

REVIEWERS = ("admin", "assurance")
READERS = ("admin", "supervisor", "assurance")
EVERYONE = (*READERS, "officer")


# --- helpers ----------------------------------------------------------------------------


def own_officer_id() -> str | None:
    """Return the officer whose records alone this user may see (officers), else None (all)."""
    if current_user.role != "officer":
        return None
    if not current_user.officer_id:
        abort(403, "This account is not linked to an officer number.")
    return current_user.officer_id


def visible_stop(session: Session, stop_id: int) -> StopSearch:
    """Return the stop if this user may see it: 404 if there is none, 403 if not theirs."""
    stop = session.get(StopSearch, stop_id)
    if stop is None:
        abort(404, f"no stop and search with id {stop_id}")
    own = own_officer_id()
    if own is not None and stop.officer_id != own:
        abort(403, "Officers can see only their own stop and search records.")
    return stop


def local_times(times: pd.Series) -> list[str | None]:
    """Return UTC timestamps as local 'YYYY-MM-DD HH:MM' text for display."""
    zone = params().zone
    return [None if pd.isna(t) else t.tz_convert(zone).strftime("%Y-%m-%d %H:%M") for t in times]


def local_time(moment: datetime | None) -> str | None:
    """Return an aware instant as local 'YYYY-MM-DD HH:MM' text for display."""
    return None if moment is None else moment.astimezone(params().zone).strftime("%Y-%m-%d %H:%M")


def stops_map(hot_spots: HotSpotSet, frame: pd.DataFrame, on: date):
    """Return the rendered map of stops over the hot spots, or None with nothing to draw."""
    located = frame[frame["latitude"].notna() & frame["longitude"].notna()]
    if not len(hot_spots) and located.empty:
        return None
    corners = []
    if len(hot_spots):
        corners.append(hot_spot_bounds(hot_spots))
    if not located.empty:
        margin = 0.002  # degrees: a lone stop still gets a street-level view
        corners.append(
            (
                located["longitude"].min() - margin,
                located["latitude"].min() - margin,
                located["longitude"].max() + margin,
                located["latitude"].max() + margin,
            )
        )
    bounds = (
        min(c[0] for c in corners),
        min(c[1] for c in corners),
        max(c[2] for c in corners),
        max(c[3] for c in corners),
    )
    fmap = maps.new_map(bounds, current_app.config["MAP_TILES"])
    if len(hot_spots):
        maps.add_hot_spots(
            fmap, [h.to_feature() for h in hot_spots], {}, ["id", "name"], ["Hot spot", "Name"]
        )
    states = review_states(located, on)
    when = pd.Series(local_times(located["occurred_at"]), index=located.index, dtype=object)
    for state, colour in REVIEW_STATE_COLOURS.items():
        group = located[states == state]
        labels = [
            f"Stop {stop_id} · {when[i]} · {kind} · {outcome or 'no outcome'} · review {state}"
            for i, stop_id, kind, outcome in zip(
                group.index, group["id"], group["type"], group["outcome"], strict=True
            )
        ]
        maps.add_points(
            fmap, list(zip(group["longitude"], group["latitude"], strict=True)), labels, colour
        )
    return maps.render(fmap, script_nonce())


def display_queue(queue: pd.DataFrame) -> list[dict]:
    """Return queue rows for the page: local times, and 'overdue' spelt out."""
    shown = queue.head(QUEUE_DISPLAY_LIMIT).copy()
    shown["occurred_at"] = local_times(shown["occurred_at"])
    shown["overdue"] = ["overdue" if o else "" for o in shown["overdue"]]
    shown["bwv_recorded"] = [{True: "yes", False: "no"}.get(b) for b in shown["bwv_recorded"]]
    return table_rows(shown)


def stop_details(stop: StopSearch) -> list[tuple[str, Any]]:
    """Return the record's fields as (label, value) pairs for its page."""
    details = [(LABELS["occurred_at"], f"{local_time(stop.occurred_at)} ({params().tz})")]
    for name in STOP_FIELDS:
        if name == "occurred_at":
            continue
        value = getattr(stop, name)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        details.append((LABELS[name], value))
    details += [
        ("Hot spot", stop.hotspot_id),
        ("Operation", stop.operation_id),
        (
            "Source",
            f"{stop.source_file or ''}{f' line {stop.source_line}' if stop.source_line else ''}",
        ),
    ]
    return details


def audit_trail(session: Session, stop_id: int) -> list[dict[str, Any]]:
    """Return the audit events of a stop, oldest first, each with its changed fields."""
    trail = []
    for event in events_about(session, stop_subject(stop_id)):
        before, after = event.before or {}, event.after or {}
        fields = list(after) + [name for name in before if name not in after]
        if not before:  # a creation: what was given is enough
            fields = [name for name in fields if after[name] is not None]
        trail.append(
            {
                "at": local_time(event.at),
                "actor": event.actor,
                "action": event.action,
                "changes": [(name, before.get(name), after.get(name)) for name in fields],
            }
        )
    return trail


def review_form_values(review: BwvReview) -> dict[str, str]:
    """Return the review as the form shows it (blank for unanswered)."""
    return {
        name: "" if getattr(review, name) is None else str(getattr(review, name))
        for name in REVIEW_FORM_FIELDS
    }


def render_stop(
    session: Session,
    stop: StopSearch,
    *,
    form: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    status: int = 200,
):
    """Render a record page: the stop, its review, the audit trail and (for reviewers) the form."""
    review = review_of(session, stop.id)
    role = current_user.role
    return render_template(
        "assurance_stop.html",
        stop=stop,
        review=review,
        details=stop_details(stop),
        overdue=is_overdue(review, today()),
        reviewed_at=local_time(review.reviewed_at),
        may_review=role in REVIEWERS,
        trail=audit_trail(session, stop.id) if role in READERS else None,
        form=dict(form) if form is not None else review_form_values(review),
        errors=dict(errors or {}),
        gowisely=GOWISELY_LABELS,
        answers=GOWISELY_ANSWERS,
        statuses=REVIEW_STATUSES,
        status_labels=STATUS_LABELS,
        outcomes=REVIEW_OUTCOMES,
        outcome_labels=OUTCOME_LABELS,
        rags=RAG_RATINGS,
        assessment=ASSESSMENT_LABELS,
        cameras=CAMERA_COVERAGE,
        camera_labels=CAMERA_LABELS,
        grades=GRADES,
        grade_labels=GRADE_LABELS,
        acknowledged_at=local_time(review.acknowledged_at),
        may_acknowledge=(
            role == "officer"
            and review.status in COMPLETED
            and review.acknowledged_at is None
            and stop.officer_id == current_user.officer_id
        ),
        actions=[action_dict(a, today()) for a in actions_of(session, stop.id)],
    ), status


# --- pages ------------------------------------------------------------------------------


@blueprint.get("/")
@roles_required(*EVERYONE)
def queue():
    """The assurance dashboard: figures, the review queue, outcomes, breakdowns and the map."""
    if current_user.role == "officer":
        # The menu links here for everyone; an officer's view is their own records.
        return redirect(url_for("assurance.mine"))
    db = get_db()
    from_day, to_day = period()
    on = today()
    tz = params().tz
    if wants_csv() and request.args.get("table") == "stops":
        return csv_response(
            export_stops(db, tz=tz, from_day=from_day, to_day=to_day),
            f"stops{_period_suffix(from_day, to_day)}.csv",
        )
    population, groups, population_problem = _population()
    frame = stops_frame(db, tz=tz, from_day=from_day, to_day=to_day)
    tables = assurance_tables(frame, on, population)
    tables.update(
        panel_tables(frame, population=groups, presence_hours=presence_hours(db, from_day, to_day))
    )
    if wants_csv():
        name = request.args.get("table", "")
        if name not in tables:
            abort(400, f"table must be one of stops, {', '.join(tables)}")
        return csv_response(tables[name], f"{name}{_period_suffix(from_day, to_day)}.csv")
    hot_spots = stored_hot_spots(db)
    hot_spot_names = {h.id: h.name for h in hot_spots}
    tables["hotspots"].insert(
        1, "hotspot_name", [hot_spot_names.get(i, "") for i in tables["hotspots"]["hotspot_id"]]
    )
    tables["patrol-hours"].insert(
        1, "hotspot_name", [hot_spot_names.get(i, "") for i in tables["patrol-hours"]["hotspot_id"]]
    )
    rows = {name: table_rows(table) for name, table in tables.items() if name != "queue"}
    return render_template(
        "assurance_queue.html",
        summary=rows["summary"][0],
        queue=display_queue(tables["queue"]),
        queue_total=len(tables["queue"]),
        queue_limit=QUEUE_DISPLAY_LIMIT,
        rows=rows,
        queue_columns=QUEUE_TABLE,
        breakdown_columns=BREAKDOWN_COLUMNS,
        population_columns=POPULATION_COLUMNS,
        with_population="population" in tables["ethnicity"],
        groups_population=groups is not None,
        population_problem=population_problem,
        search=rows["search-figures"][0],
        quality=review_quality(frame, actions_frame(db), on),
        small_number=SMALL_NUMBER,
        buffer_m=settings.get("TRACKER_STOP_BUFFER_M"),
        map=stops_map(hot_spots, frame, on),
        state_colours=REVIEW_STATE_COLOURS,
        from_day=from_day,
        to_day=to_day,
        on=on,
        white=WHITE_PREFIX,
        outcome_labels=OUTCOME_LABELS,
        status_labels=STATUS_LABELS,
        may_create=current_user.role in REVIEWERS,
        csv_args={k: v.isoformat() for k, v in (("from", from_day), ("to", to_day)) if v},
    )


def _population() -> tuple[dict | None, dict | None, str | None]:
    """The population file (TRACKER_POPULATION_FILE): a group,population CSV of the five
    broad groups, or the older JSON by self-defined ethnicity; and what is wrong with it."""
    path = current_app.config.get("POPULATION_FILE")
    if not path:
        return None, None, None
    try:
        if str(path).lower().endswith(".csv"):
            return None, load_group_population(path), None
        return load_population(path), None, None
    except PopulationError as exc:
        current_app.logger.warning("%s", exc)
        return None, None, str(exc)


def _period_suffix(from_day: date | None, to_day: date | None) -> str:
    return "".join(f"-{label}-{day}" for label, day in (("from", from_day), ("to", to_day)) if day)


@blueprint.get("/mine")
@roles_required("officer")
def mine():
    """An officer's own stop and search records and where each one's BWV review stands."""
    db = get_db()
    officer_id = own_officer_id()
    from_day, to_day = period()
    tz = params().tz
    if wants_csv():
        export = export_stops(db, tz=tz, from_day=from_day, to_day=to_day)
        return csv_response(
            export[export["officer_id"] == officer_id].reset_index(drop=True),
            f"my-stops{_period_suffix(from_day, to_day)}.csv",
        )
    frame = stops_frame(db, tz=tz, from_day=from_day, to_day=to_day)
    own = frame[frame["officer_id"] == officer_id].iloc[::-1].copy()
    own["occurred_at"] = local_times(own["occurred_at"])
    return render_template(
        "assurance_mine.html",
        rows=table_rows(own[[key for key, _ in MINE_TABLE]]),
        columns=MINE_TABLE,
        from_day=from_day,
        to_day=to_day,
        officer_id=officer_id,
        pending=int((own["review_status"] == "pending").sum()),
        csv_args={k: v.isoformat() for k, v in (("from", from_day), ("to", to_day)) if v},
    )


@blueprint.get("/stops/<int:stop_id>")
@roles_required(*EVERYONE)
def stop(stop_id: int):
    """One record with its review and the review's audit trail (officers: their own only)."""
    db = get_db()
    return render_stop(db, visible_stop(db, stop_id))


@blueprint.post("/stops/<int:stop_id>/review")
@roles_required(*REVIEWERS)
def review(stop_id: int):
    """Save the BWV review form; re-show it with each field's problem if it cannot be saved."""
    db = get_db()
    record = visible_stop(db, stop_id)
    changes = {name: request.form[name] for name in REVIEW_FORM_FIELDS if name in request.form}
    try:
        saved = update_review(
            db,
            stop_id,
            current_user.audit_name,
            changes,
            reviewer=current_user.username,
            second_review_rate=current_app.config["SECOND_REVIEW_RATE"],
        )
    except ReviewError as exc:
        db.rollback()
        return render_stop(db, record, form=request.form, errors=exc.errors, status=400)
    changed = any(isinstance(obj, AuditEvent) for obj in db.new)
    db.commit()
    if changed:
        outcome = OUTCOME_LABELS.get(saved.outcome or "", "")
        flash(
            f"Review of stop {stop_id} saved: {STATUS_LABELS[saved.status].lower()}"
            f"{f' ({outcome.lower()})' if outcome else ''}.",
            "info",
        )
    else:
        flash(f"Nothing changed in the review of stop {stop_id}.", "info")
    return redirect(url_for("assurance.stop", stop_id=stop_id))


@blueprint.route("/stops/new", methods=["GET", "POST"])
@roles_required(*REVIEWERS)
def new_stop():
    """Record one stop and search through a form (its time is local to the operation)."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        db = get_db()
        values = {name: request.form.get(name, "") for name in STOP_FIELDS}
        try:
            created = create_stop(
                db,
                values,
                actor=current_user.audit_name,
                policy=current_app.config["REVIEW_POLICY"],
                naive_tz=params().tz,
                source="form",
            )
        except StopValidationError as exc:
            db.rollback()
            errors = exc.errors
        else:
            stop_id = created.id
            db.commit()
            flash(f"Stop and search {stop_id} recorded; its BWV review is pending.", "info")
            return redirect(url_for("assurance.stop", stop_id=stop_id))
    else:
        now = datetime.now(params().zone)
        values = {"type": SEARCH_TYPES[0], "occurred_at": now.strftime("%Y-%m-%dT%H:%M")}
    return render_template(
        "assurance_new.html",
        values=values,
        errors=errors,
        labels=LABELS,
        search_types=SEARCH_TYPES,
        suggestions=SUGGESTIONS,
        tz=params().tz,
        latest=datetime.now(params().zone).strftime("%Y-%m-%dT%H:%M"),
    ), (400 if errors else 200)


def _stop_action(stop_id: int, act) -> Any:
    """Run one change to a stop's review from a form; back to the page, or the page again
    with the problems."""
    db = get_db()
    record = visible_stop(db, stop_id)
    try:
        act(db)
    except ReviewError as exc:
        db.rollback()
        return render_stop(db, record, form=request.form, errors=exc.errors, status=400)
    db.commit()
    return redirect(url_for("assurance.stop", stop_id=stop_id))


@blueprint.post("/stops/<int:stop_id>/acknowledge")
@roles_required("officer")
def acknowledge_form(stop_id: int):
    """The officer who made the stop has read the review's findings."""
    return _stop_action(
        stop_id,
        lambda db: acknowledge(db, stop_id, current_user.officer_id, current_user.audit_name),
    )


@blueprint.post("/stops/<int:stop_id>/second-review")
@roles_required(*REVIEWERS)
def second_review_form(stop_id: int):
    """A second reviewer's grade of a review drawn for one."""
    return _stop_action(
        stop_id,
        lambda db: second_review(
            db,
            stop_id,
            current_user.username,
            request.form.get("second_grade"),
            request.form.get("second_note"),
            actor=current_user.audit_name,
        ),
    )


@blueprint.post("/stops/<int:stop_id>/actions")
@roles_required(*REVIEWERS)
def add_action_form(stop_id: int):
    """Add an action to a stop's review."""
    return _stop_action(
        stop_id,
        lambda db: add_action(
            db,
            stop_id,
            current_user.audit_name,
            request.form.get("description"),
            request.form.get("owner"),
            request.form.get("due_date"),
        ),
    )


@blueprint.post("/stops/<int:stop_id>/actions/<int:action_id>/done")
@roles_required(*REVIEWERS)
def action_done(stop_id: int, action_id: int):
    """Mark one of a stop's review actions done."""
    db = get_db()
    visible_stop(db, stop_id)
    if action_id not in {a.id for a in actions_of(db, stop_id)}:
        abort(404, f"no action {action_id} on stop {stop_id}")
    return _stop_action(
        stop_id, lambda db: set_action_status(db, action_id, "done", current_user.audit_name)
    )


@blueprint.get("/scrutiny-pack")
@roles_required(*REVIEWERS)
def scrutiny_pack_download():
    """The community scrutiny pack of a month (`month`, `sample`, `seed`) as a ZIP."""
    try:
        sample = int(request.args.get("sample", "20"))
        seed = int(request.args.get("seed", "1"))
    except ValueError:
        abort(400, "sample and seed are whole numbers")
    if not 1 <= sample <= 1000:
        abort(400, "sample: from 1 to 1,000 encounters")
    month = request.args.get("month", "")
    try:
        pack = scrutiny_pack(get_db(), month, sample, params().tz, seed)
    except ValueError as exc:
        abort(400, str(exc))
    return download_response(pack.zip_bytes(), f"scrutiny-{pack.month}.zip", "application/zip")
