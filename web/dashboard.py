"""Supervisors' pages: overview, hot spot, tracks, ingest health, and an officer's own page."""

from __future__ import annotations

from datetime import timedelta

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
from sqlalchemy import select

from tracker.accounts.audit import record
from tracker.dosage.ingest_health import device_health, ingest_rates
from tracker.dosage.patrols import (
    hour_by_weekday,
    officer_devices,
    officer_figures,
    track,
)
from tracker.dosage.reports import dead_letter_report
from tracker.dosage.store import stored_hot_spots
from tracker.foundation.clock import local_days_us, local_today
from tracker.foundation.models import Device, HotSpotRow, Officer
from tracker.plan.compliance import (
    compliance_table,
    hot_spot_overview,
    hot_spot_tables,
    overview_table,
)
from tracker.plan.storage import operation_day
from web import charts, maps
from web.auth import DOSAGE_READERS, SUPERVISORS, roles_required
from web.database import get_db
from web.security import script_nonce
from web.views import (
    csv_response,
    current_operation,
    hot_spot_bounds,
    params,
    parse_day,
    period,
    table_rows,
    thresholds,
    today,
    wants_csv,
)

blueprint = Blueprint("dashboard", __name__)


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
    letters = dead_letter_report(db, limit=200)
    table = request.args.get("table")
    if wants_csv():
        frames = {"devices": devices, "rates": rates, "dead-letters": letters}
        if table not in frames:
            abort(400, "table must be devices, rates or dead-letters")
        return csv_response(frames[table], f"{table}.csv")
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
    )


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
        pings=table_rows(pings.drop(columns=["t_us"]).head(2000)),
        ping_count=len(pings),
        visits=table_rows(figures) if figures is not None else [],
    )
    return render_template("tracks.html", **context)


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


OVERVIEW_TABLE = [
    ("hotspot_id", "Hot spot"),
    ("hotspot_name", "Name"),
    ("day_pct", "Today %"),
    ("day_presence_status", "Today"),
    ("week_pct", "This week %"),
    ("week_presence_status", "Week"),
    ("operation_pct", "To date %"),
    ("operation_presence_status", "To date"),
    ("week_over_max", "Over max (week)"),
    ("days_since_last_visit", "Days since visit"),
    ("week_longest_gap_hours", "Longest gap (h)"),
    ("trend", "Trend"),
]


@blueprint.get("/overview")
@roles_required(*DOSAGE_READERS)
def overview():
    """Day N of the operation, the RAG table of all hot spots, and the map."""
    db = get_db()
    operation = current_operation()
    reference = parse_day("date", local_today(operation.tz))
    if wants_csv():
        table = compliance_table(db, operation, reference, thresholds())
        which = request.args.get("table", "overview")
        if which == "periods":
            return csv_response(table, f"compliance-{reference}.csv")
        return csv_response(hot_spot_overview(table), f"overview-{reference}.csv")
    # The same figures as hot_spot_overview(compliance_table(...)), reading only what they need.
    rows = overview_table(db, operation, reference, thresholds())
    for name in ("day", "week", "operation"):
        rows[f"{name}_pct"] = [percent(v) for v in rows[f"{name}_presence_compliance"]]
    hot_spots = stored_hot_spots(db)
    status = {
        r.hotspot_id: ("over" if r.week_over_max else r.week_presence_status)
        for r in rows.itertuples()
    }
    by_id = {r["hotspot_id"]: r for r in table_rows(rows)}
    features = []
    for hot_spot in hot_spots:
        feature = hot_spot.to_feature()
        row = by_id.get(hot_spot.id, {})
        feature["properties"] = {
            "id": hot_spot.id,
            "name": hot_spot.name,
            "today": _pct_text(row.get("day_pct")),
            "week": _pct_text(row.get("week_pct")),
            "to_date": _pct_text(row.get("operation_pct")),
        }
        features.append(feature)
    rendered = None
    if len(hot_spots):
        fmap = maps.new_map(hot_spot_bounds(hot_spots), current_app.config["MAP_TILES"])
        maps.add_hot_spots(
            fmap,
            features,
            status,
            ["id", "name", "today", "week", "to_date"],
            ["Hot spot", "Name", "Today", "This week", "To date"],
        )
        rendered = maps.render(fmap, script_nonce())
    counts = rows["week_presence_status"].value_counts().to_dict()
    return render_template(
        "overview.html",
        operation=operation,
        reference=reference,
        day_n=operation_day(operation, reference),
        rows=table_rows(rows),
        columns=OVERVIEW_TABLE,
        map=rendered,
        counts=counts,
        hot_spot_count=len(hot_spots),
    )


def _pct_text(value) -> str:
    return "no target" if value is None else f"{value:.0f}%"


@blueprint.get("/hotspots/<hotspot_id>")
@roles_required(*DOSAGE_READERS)
def hot_spot(hotspot_id: str):
    """One hot spot: cumulative dosage against plan, daily bars, visits, hours, contributors."""
    db = get_db()
    row = db.get(HotSpotRow, hotspot_id)
    if row is None:
        abort(404, f"no hot spot {hotspot_id!r}")
    operation = current_operation()
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
        daily=table_rows(recent.iloc[::-1]),
        visits=table_rows(visits.iloc[::-1].head(200)),
        visit_count=len(visits),
        heat=table_rows(heat),
        contributors=None if contributors is None else table_rows(contributors),
        totals=_totals(daily),
    )


def _totals(daily: pd.DataFrame) -> dict:
    return {
        "presence": float(daily["presence_minutes"].sum()),
        "counted": float(daily["counted_presence_minutes"].sum()),
        "target": float(daily["target_presence_minutes"].fillna(0).sum()),
        "visits": int(daily["visits"].sum()),
        "qualifying": int(daily["qualifying_visits"].sum()),
    }
