"""Supervisors' pages: overview, hot spot, tracks, ingest health, and an officer's own page."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
from flask import (
    Blueprint,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from sqlalchemy import func, select

from tracker.accounts.audit import record
from tracker.dosage.engine import rounded_minutes
from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.ingest_health import device_health, ingest_rates
from tracker.dosage.patrols import (
    WEEKDAYS,
    hour_by_weekday,
    officer_devices,
    officer_figures,
    track,
)
from tracker.dosage.reports import dead_letter_report
from tracker.dosage.store import stored_hot_spots
from tracker.foundation import settings
from tracker.foundation.clock import (
    US_PER_MINUTE,
    US_PER_S,
    instant_us,
    local_days_us,
    local_midnight_us,
    local_today,
)
from tracker.foundation.models import DailyDosage, DeadLetter, Device, HotSpotRow, Officer
from tracker.plan.compliance import (
    LAST_7_DAYS,
    compliance_table,
    hot_spot_overview,
    hot_spot_tables,
    last_presence_ends,
    overview_with_periods,
)
from tracker.plan.storage import operation_day, stored_plan
from tracker.stops.figures import stops_frame
from tracker.stops.search_figures import presence_hours, search_figures
from web import charts, maps
from web.assurance import stops_map
from web.auth import DOSAGE_READERS, SUPERVISORS, roles_required
from web.database import get_db
from web.maps import RAG_COLOURS
from web.security import script_nonce
from web.views import (
    STATUS_WORDS,
    cell_text,
    csv_response,
    current_operation,
    duration_text,
    hot_spot_bounds,
    local_time,
    operation_name,
    operation_or_none,
    params,
    parse_day,
    period,
    status_badge,
    table_rows,
    thresholds,
    today,
    wants_csv,
    words,
)

blueprint = Blueprint("dashboard", __name__)
# What every page shows values with (web/views.py); the dashboard is always registered.
blueprint.add_app_template_filter(cell_text, "cell")
blueprint.add_app_template_filter(local_time, "local_time")
blueprint.add_app_template_filter(words, "words")
blueprint.add_app_template_filter(duration_text, "duration")
blueprint.add_app_template_global(status_badge, "status_badge")
blueprint.add_app_template_global(operation_name, "operation_name")


@blueprint.get("/")
@login_required
def home():
    """Send each role to its start page."""
    if current_user.role == "officer":
        return redirect(url_for("dashboard.me"))
    if current_user.role == "assurance" and "assurance.queue" in current_app.view_functions:
        return redirect(url_for("assurance.queue"))
    return redirect(url_for("dashboard.overview"))


@blueprint.get("/health")
@roles_required("admin", "supervisor")
def health():
    """Devices and their last ping, ingest rates and recent dead letters."""
    db = get_db()
    devices = device_health(db)
    rates = ingest_rates(db)
    table = request.args.get("table")
    if wants_csv():
        frames = {"devices": devices, "rates": rates}
        if table == "dead-letters":  # all of them: the page shows the newest
            frames[table] = dead_letter_report(db)
        if table not in frames:
            abort(400, "table must be devices, rates or dead-letters")
        return csv_response(frames[table], f"{table}.csv")
    letters = dead_letter_report(db, limit=LETTERS_SHOWN)
    silent = devices[(devices["minutes_since_last_ping"].fillna(1e9) > 15)]
    return render_template(
        "health.html",
        devices=table_rows(devices),
        rates=table_rows(rates),
        letters=table_rows(letters),
        silent=len(silent),
        total=len(devices),
        pings_last_hour=int(devices["pings_last_hour"].sum()) if len(devices) else 0,
        letters_last_day=int(rates["dead_letters"].sum()) if len(rates) else 0,
        letter_total=db.scalar(select(func.count()).select_from(DeadLetter)),
        tz=params().tz,
    )


LETTERS_SHOWN = 200  # the newest; the CSV has them all


@blueprint.get("/tracks")
@roles_required("supervisor")
def tracks():
    """One officer's or one device's pings and visits on a map for a day (audited)."""
    db = get_db()
    day = parse_day("date", today())
    device_id = (request.args.get("device") or "").strip()
    officer_id = (request.args.get("officer") or "").strip()
    officers = db.execute(select(Officer.id, Officer.name).order_by(Officer.id)).all()
    devices = db.scalars(select(Device.id).order_by(Device.id)).all()
    context = {
        "day": day,
        "device_id": device_id,
        "officer_id": officer_id,
        "officers": officers,
        "devices": devices,
        "map": None,
        "pings": [],
        "visits": [],
    }
    if not device_id and not officer_id:
        return render_template("tracks.html", **context)
    if device_id and device_id not in devices:
        abort(404, f"no device {device_id!r}")
    if officer_id and db.get(Officer, officer_id) is None:
        abort(404, f"no officer {officer_id!r}")
    device_ids = [device_id] if device_id else officer_devices(db, officer_id)
    subject = f"device:{device_id}" if device_id else f"officer:{officer_id}"
    # Viewing someone's movements is itself recorded, whoever looks.
    record(db, current_user.audit_name, "track.view", subject, None, {"date": day.isoformat()})
    db.commit()
    start_us, end_us = local_days_us(day, day, params().zone)
    pings = track(db, device_ids, start_us, end_us)
    figures = (
        officer_figures(db, params(), day, day, officer_id=officer_id or None)
        if officer_id
        else None
    )
    if wants_csv():
        return csv_response(pings.drop(columns=["t_us"]), f"track-{subject}-{day}.csv")
    # The page shows local times to the second; the CSV keeps the stored UTC instants.
    pings["time"] = _local_times(pings["t_us"], params().zone)
    hot_spots = stored_hot_spots(db)
    rendered = None
    if len(hot_spots):
        bounds = (
            hot_spot_bounds(hot_spots)
            if pings.empty
            else (
                pings["lon"].min() - 0.002,
                pings["lat"].min() - 0.002,
                pings["lon"].max() + 0.002,
                pings["lat"].max() + 0.002,
            )
        )
        fmap = maps.new_map(bounds, current_app.config["MAP_TILES"])
        maps.add_hot_spots(
            fmap, [h.to_feature() for h in hot_spots], {}, ["id", "name"], ["Hot spot", "Name"]
        )
        for _, group in pings.groupby("device_id"):
            maps.add_track(
                fmap,
                list(zip(group["lon"], group["lat"], strict=True)),
                [f"{d} {t}" for d, t in zip(group["device_id"], group["time"], strict=True)],
            )
        rendered = maps.render(fmap, script_nonce())
    context.update(
        map=rendered,
        pings=table_rows(pings.drop(columns=["t_us"]).head(PINGS_SHOWN)),
        ping_count=len(pings),
        devices_seen=table_rows(_track_summary(pings)),
        visits=table_rows(figures) if figures is not None else [],
    )
    return render_template("tracks.html", **context)


PINGS_SHOWN = 100  # the first of the day; the CSV has them all


def _local_times(t_us: pd.Series, zone: ZoneInfo) -> list[str]:
    """Return UTC microsecond instants as local times to the second, with the zone named."""
    if not len(t_us):
        return []
    local = pd.to_datetime(t_us.to_numpy(dtype="int64"), unit="us", utc=True).tz_convert(zone)
    return list(local.strftime("%Y-%m-%d %H:%M:%S %Z"))


def _track_summary(pings: pd.DataFrame) -> pd.DataFrame:
    """Return one row per device of a track: its pings, first and last, and median accuracy."""
    return (
        pings.groupby("device_id", as_index=False)
        .agg(
            pings=("t_us", "size"),
            first=("time", "first"),
            last=("time", "last"),
            accuracy_m=("accuracy_m", "median"),
        )
        .sort_values("device_id")
    )


@blueprint.get("/me")
@roles_required("officer")
def me():
    """An officer's own figures: their time and visits in each hot spot."""
    db = get_db()
    from_day, to_day = period(last_days=28)
    figures = officer_figures(db, params(), from_day, to_day, officer_id=current_user.officer_id)
    if wants_csv():
        return csv_response(figures, f"my-patrols-{from_day}-{to_day}.csv")
    totals = figures.groupby("hotspot_id", as_index=False)[["officer_minutes", "visits"]].sum()
    return render_template(
        "me.html",
        figures=table_rows(figures),
        totals=table_rows(totals),
        from_day=from_day,
        to_day=to_day,
    )


def percent(value) -> float | None:
    return None if value is None or value != value else round(100 * float(value), 1)


# The periods of the overview's table, in its order: (period, heading).
OVERVIEW_PERIODS = [
    ("day", "Today so far"),
    ("week", "This week"),
    (LAST_7_DAYS, "Last 7 days"),
    ("previous_week", "Last week"),
    ("operation", "To date"),
]
# The figures behind the overview's "More figures" toggle.
MORE_FIGURES = [
    ("hotspot_id", "Hot spot"),
    ("day_minutes", "Today: counted / target min"),
    ("week_minutes", "This week: counted / target min"),
    ("last_7_days_minutes", "Last 7 days: counted / target min"),
    ("week_days_over_max", "Days over max this week", "count"),
    ("week_longest_gap_hours", "Longest gap this week (h)"),
    ("days_since_last_visit", "Days since a visit", "count"),
]
TREND_SIGNS = {"up": "↑", "down": "↓", "flat": "→"}


@blueprint.get("/overview")
@roles_required(*DOSAGE_READERS)
def overview():
    """Day N of the operation, each hot spot's status and figures, and the map; before any
    plan is loaded, the hot spots' dosage and time since presence, without targets."""
    db = get_db()
    operation = operation_or_none()
    if operation is None:
        return _overview_without_plan(db)
    reference = parse_day("date", local_today(operation.tz))
    if wants_csv():
        table = compliance_table(db, operation, reference, thresholds())
        which = request.args.get("table", "overview")
        if which == "periods":
            return csv_response(table, f"compliance-{reference}.csv")
        return csv_response(hot_spot_overview(table), f"overview-{reference}.csv")
    # The same figures as hot_spot_overview(compliance_table(...)), reading only what they
    # need, and the figures of the other periods the page shows.
    table, periods = overview_with_periods(db, operation, reference, thresholds())
    hot_spots = stored_hot_spots(db)
    at_us = _presence_moment(reference, ZoneInfo(operation.tz))
    since = _minutes_since_presence(db, table["hotspot_id"].tolist(), at_us)
    figures = {(r["hotspot_id"], r["period"]): r for r in table_rows(periods)}
    rows = []
    for row in table_rows(table):
        hotspot_id = row["hotspot_id"]
        cells = {p: _period_cell(figures.get((hotspot_id, p)), row, p) for p, _ in OVERVIEW_PERIODS}
        week = figures.get((hotspot_id, "week"), {})
        rows.append(
            {
                **row,
                "periods": cells,
                "since_minutes": since.get(hotspot_id),
                "trend_sign": TREND_SIGNS.get(row["trend"], ""),
                "week_days_over_max": week.get("days_over_max"),
                **{
                    f"{p}_minutes": _minutes_text(figures.get((hotspot_id, p)))
                    for p in ("day", "week", LAST_7_DAYS)
                },
            }
        )
    status = dict(zip(table["hotspot_id"], table["week_presence_status"], strict=True))
    links = {
        r["hotspot_id"]: url_for(
            "dashboard.hot_spot", hotspot_id=r["hotspot_id"], date=reference.isoformat()
        )
        for r in rows
    }
    by_id = {r["hotspot_id"]: r for r in rows}
    features = []
    for hot_spot in hot_spots:
        feature = hot_spot.to_feature()
        row = by_id.get(hot_spot.id)
        cells = row["periods"] if row else {}
        feature["properties"] = {
            "id": hot_spot.id,
            "name": hot_spot.name,
            **{p: _tooltip_text(cells.get(p)) for p in ("day", "week", "operation")},
        }
        features.append(feature)
    counts = table["week_presence_status"].value_counts().to_dict()
    today_there = local_today(operation.tz)
    return render_template(
        "overview.html",
        operation=operation,
        reference=reference,
        is_today=reference == today_there,
        day_n=operation_day(operation, reference),
        days=operation_day(operation, operation.end_date),
        rows=rows,
        periods=OVERVIEW_PERIODS,
        more_columns=MORE_FIGURES,
        map=_overview_map(hot_spots, features, status, links),
        counts=counts,
        hot_spot_count=len(hot_spots),
        presence_at=_moment_text(at_us, ZoneInfo(operation.tz)),
        statuses=list(RAG_COLOURS),
        colours=RAG_COLOURS,
    )


def _overview_without_plan(db):
    """The overview before any plan is loaded: each stored hot spot's presence today, this
    week and in the last 7 days, and the time since its last presence; no targets."""
    zone = params().zone
    reference = parse_day("date", local_today(zone))
    hot_spots = stored_hot_spots(db)
    ids = [h.id for h in hot_spots]
    monday = reference - timedelta(days=reference.weekday())
    bounds = {
        "day": (reference, reference),
        "week": (monday, reference),
        LAST_7_DAYS: (reference - timedelta(days=6), reference),
    }
    presence = _presence_minutes(db, ids, bounds)
    at_us = _presence_moment(reference, zone)
    since = _minutes_since_presence(db, ids, at_us)
    frame = pd.DataFrame(
        {
            "hotspot_id": ids,
            "hotspot_name": [h.name for h in hot_spots],
            **{f"{p}_presence_minutes": [presence[p].get(h, 0.0) for h in ids] for p in bounds},
            "minutes_since_presence": [since.get(h) for h in ids],
        }
    )
    if wants_csv():
        return csv_response(frame, f"dosage-{reference}.csv")
    features = []
    for hot_spot in hot_spots:
        feature = hot_spot.to_feature()
        feature["properties"] = {"id": hot_spot.id, "name": hot_spot.name}
        features.append(feature)
    return render_template(
        "overview.html",
        operation=None,
        reference=reference,
        is_today=reference == local_today(zone),
        tz=params().tz,
        rows=table_rows(frame),
        map=_overview_map(hot_spots, features, {}, {}),
        hot_spot_count=len(hot_spots),
        presence_at=_moment_text(at_us, zone),
        statuses=list(RAG_COLOURS),
        colours=RAG_COLOURS,
    )


def _overview_map(hot_spots, features: list[dict], status: dict, links: dict):
    """Return the overview's map: opened on the hot spots, each labelled with its id and
    coloured by this week's status, a click opening its page (or None without hot spots)."""
    if not len(hot_spots):
        return None
    fields = ["id", "name", "day", "week", "operation"] if status else ["id", "name"]
    aliases = ["Hot spot", "Name", "Today so far", "This week", "To date"][: len(fields)]
    fmap = maps.new_map(hot_spot_bounds(hot_spots), current_app.config["MAP_TILES"])
    maps.add_hot_spots(fmap, features, status, fields, aliases, links=links, labelled=True)
    return maps.render(fmap, script_nonce())


def _period_cell(figures: dict | None, row: dict, period: str) -> dict:
    """Return one period's cell of the overview: status, percent, counted, target and all
    presence minutes (the operation's row has only its compliance and status)."""
    figures = figures or {}
    return {
        "status": row.get(f"{period}_presence_status", figures.get("presence_status", "none")),
        "pct": percent(
            row.get(f"{period}_presence_compliance", figures.get("presence_compliance"))
        ),
        "counted": figures.get("counted_presence_minutes"),
        "target": figures.get("target_presence_minutes"),
        "presence": figures.get("presence_minutes"),
    }


def _minutes_text(figures: dict | None) -> str:
    if not figures:
        return "–"
    counted = figures["counted_presence_minutes"]
    target = figures["target_presence_minutes"]
    return f"{counted:,.0f} / {target:,.0f}" if target else f"{counted:,.0f} / no target"


def _tooltip_text(cell: dict | None) -> str:
    """Return a period's figure for a map tooltip: "95% GREEN", "OVER MAX", "no target"."""
    if not cell or cell["status"] == "none":
        return "no target"
    word = STATUS_WORDS[cell["status"]][0]
    return word if cell["pct"] is None else f"{cell['pct']:.0f}% {word}"


def _presence_moment(reference: date, zone: ZoneInfo) -> int:
    """Return the instant "time since presence" is measured to: now, or the end of a past
    reference day."""
    now_us = instant_us(datetime.now(UTC))
    return min(now_us, local_midnight_us(reference + timedelta(days=1), zone))


def _moment_text(t_us: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(t_us / US_PER_S, tz=zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _minutes_since_presence(db, hotspot_ids: list[str], at_us: int) -> dict[str, float]:
    """Return minutes from the end of each hot spot's last presence (its stored credited
    spans) to `at_us`, for the hot spots with any."""
    # No stored span is longer than max_gap_s; a day's margin also covers spans stored
    # under an earlier, longer max_gap_s (as officer_figures reads them).
    longest_us = int(max(params().max_gap_s, 86_400) * US_PER_S)
    ends = last_presence_ends(db, hotspot_ids, at_us, longest_us)
    return {h: (at_us - end) / US_PER_MINUTE for h, end in ends.items()}


def _presence_minutes(db, hotspot_ids: list[str], bounds: dict) -> dict[str, dict[str, float]]:
    """Return the stored presence minutes per period (first and last day) and hot spot."""
    first = min(b[0] for b in bounds.values())
    last = max(b[1] for b in bounds.values())
    rows = db.execute(
        select(DailyDosage.hotspot_id, DailyDosage.day, DailyDosage.presence_us).where(
            DailyDosage.hotspot_id.in_(hotspot_ids), DailyDosage.day.between(first, last)
        )
    ).all()
    totals: dict[str, dict[str, int]] = {p: {} for p in bounds}
    for hotspot_id, day, presence_us in rows:
        for name, (low, high) in bounds.items():
            if low <= day <= high:
                totals[name][hotspot_id] = totals[name].get(hotspot_id, 0) + presence_us
    return {
        name: {h: float(rounded_minutes(us)) for h, us in spots.items()}
        for name, spots in totals.items()
    }


@blueprint.get("/hotspots/<hotspot_id>")
@roles_required(*DOSAGE_READERS)
def hot_spot(hotspot_id: str):
    """One hot spot: cumulative dosage against plan, daily bars, visits, hours, contributors."""
    db = get_db()
    row = db.get(HotSpotRow, hotspot_id)
    if row is None:
        abort(404, f"no hot spot {hotspot_id!r}")
    operation = current_operation()
    plan = stored_plan(db, operation)
    if hotspot_id not in plan.hotspot_ids:
        abort(404, f"hot spot {hotspot_id!r} is not in the plan of {operation.name}")
    reference = parse_day("date", local_today(operation.tz))
    recent_from = max(operation.start_date, reference - timedelta(days=27))
    # daily_compliance, cumulative_series and hot_spot_visits, reading the visits once.
    daily, cumulative, visits = hot_spot_tables(
        db, operation, hotspot_id, params(), reference, thresholds()
    )
    heat = hour_by_weekday(db, hotspot_id, recent_from, reference)
    may_see_officers = current_user.role in SUPERVISORS
    contributors = None
    if may_see_officers:
        figures = officer_figures(db, params(), recent_from, reference, hotspot_id=hotspot_id)
        contributors = (
            figures.groupby(["officer_id", "officer_name"], as_index=False)[
                ["officer_minutes", "visits"]
            ]
            .sum()
            .sort_values("officer_minutes", ascending=False)
        )
    tables = {"daily": daily, "cumulative": cumulative, "visits": visits, "hours": heat}
    if contributors is not None:
        tables["contributors"] = contributors
    if wants_csv():
        which = request.args.get("table", "daily")
        if which not in tables:
            abort(
                403 if which == "contributors" else 400, f"table must be one of {', '.join(tables)}"
            )
        return csv_response(tables[which], f"{hotspot_id}-{which}-{reference}.csv")
    stops, stops_map = _stops_here(db, operation, hotspot_id, reference)
    recent = daily[daily["date"] >= recent_from]
    labels = [d.strftime("%d %b") for d in cumulative["date"]]
    cumulative_chart = charts.line_chart(
        labels,
        [
            ("actual", "#0969da", cumulative["cumulative_presence_minutes"].tolist()),
            ("plan", "#cf222e", cumulative["cumulative_target_presence_minutes"].tolist()),
        ],
        "presence minutes (cumulative)",
        f"{hotspot_id}: cumulative presence against the plan",
    )
    daily_chart = charts.bar_chart(
        [d.strftime("%d %b") for d in recent["date"]],
        recent["counted_presence_minutes"].tolist(),
        recent["target_presence_minutes"].tolist(),
        "presence minutes per day",
        f"{hotspot_id}: daily presence and target",
    )
    return render_template(
        "hotspot.html",
        hot_spot=row,
        operation=operation,
        reference=reference,
        day_n=operation_day(operation, reference),
        cumulative_chart=cumulative_chart,
        daily_chart=daily_chart,
        is_today=reference == local_today(operation.tz),
        tz=operation.tz,
        daily=table_rows(recent.iloc[::-1]),
        visits=table_rows(visits.iloc[::-1].head(VISITS_SHOWN)),
        visit_count=len(visits),
        heat=heat_map(heat, window_cells(plan, hotspot_id, recent_from, reference)),
        recent_from=recent_from,
        contributors=None
        if contributors is None
        else table_rows(contributors.head(CONTRIBUTORS_SHOWN)),
        contributor_count=0 if contributors is None else len(contributors),
        totals=_totals(daily),
        stops=stops,
        stops_map=stops_map,
        stops_from=operation.start_date,
    )


def _stops_here(db, operation, hotspot_id: str, reference: date):
    """The operation's searches linked to this hot spot up to `reference`: counts, positive
    outcomes, searches per patrol hour (search_figures' definitions) and a map, or None."""
    frame = stops_frame(db, tz=operation.tz, from_day=operation.start_date, to_day=reference)
    frame = frame[frame["hotspot_id"].eq(hotspot_id)]
    if frame.empty:
        return None, None
    hours = presence_hours(db, operation.start_date, reference).get(hotspot_id, 0.0)
    figures = search_figures(frame, presence_hours={hotspot_id: hours})
    (here,) = [h for h in figures["by_hotspot"] if h["hotspot_id"] == hotspot_id]
    summary = {
        "searches": figures["searches"],
        "positive_outcomes": figures["positive_outcomes"],
        "positive_outcome_rate": figures["positive_outcome_rate"],
        "hours": hours,
        "per_hour": here["searches_per_patrol_hour"],
        "buffer_m": settings.get("TRACKER_STOP_BUFFER_M"),
    }
    spot = HotSpotSet([h for h in stored_hot_spots(db) if h.id == hotspot_id])
    return summary, stops_map(spot, frame, reference)


VISITS_SHOWN = 50  # the newest; the CSV has them all
CONTRIBUTORS_SHOWN = 25  # the most minutes first; the CSV has them all
HEAT_LEVELS = 5  # shades of the hour-by-weekday table, besides white for none


def window_cells(plan, hotspot_id: str, first: date, last: date) -> set[tuple[int, int]]:
    """Return the (clock hour, weekday) cells that the patrol windows of the hot spot's
    phases in days first..last cover; a window's hours after midnight fall on the next
    weekday."""
    cells = set()
    for phase in plan.phases:
        if phase.hotspot_id != hotspot_id or phase.ends < first or phase.starts > last:
            continue
        for window in phase.windows:
            for weekday in window.weekdays:
                for offset in window.offsets():
                    cells.add((offset % 24, (weekday + offset // 24) % 7))
    return cells


def heat_map(heat: pd.DataFrame, windows: set[tuple[int, int]]) -> list[dict]:
    """Return the hour-by-weekday table as rows of cells, each with its minutes, its shade
    (0 for none, then 1 to HEAT_LEVELS in proportion to the busiest cell) and whether a
    patrol window covers it."""
    days = list(WEEKDAYS)
    values = heat[days].to_numpy(dtype=float)
    top = values.max(initial=0.0)
    rows = []
    for hour, (label, minutes) in enumerate(zip(heat["hour"], values, strict=True)):
        rows.append(
            {
                "hour": label,
                "cells": [
                    {
                        "minutes": float(value),
                        "level": 0 if value <= 0 else max(1, math.ceil(HEAT_LEVELS * value / top)),
                        "window": (hour, weekday) in windows,
                    }
                    for weekday, value in enumerate(minutes)
                ],
            }
        )
    return rows


def _totals(daily: pd.DataFrame) -> dict:
    return {
        "presence": float(daily["presence_minutes"].sum()),
        "counted": float(daily["counted_presence_minutes"].sum()),
        "target": float(daily["target_presence_minutes"].fillna(0).sum()),
        "visits": int(daily["visits"].sum()),
        "qualifying": int(daily["qualifying_visits"].sum()),
    }
