"""The monthly board report (docs/partners.md, "The board report"): one document per operation
and month for the governance board, as HTML or PDF (WeasyPrint), charts drawn here with
matplotlib and embedded, nothing fetched.

Its figures are those of the other reports, each from the function that defines it: dosage
from the stored daily dosage (`tracker report`), compliance and RAG from the plan's
compliance table (`tracker plan compliance`), stop and search from `search_figures` (`tracker
stops figures`) and `review_quality`, crime harm from tracker.harm, problem-solving actions
from their dated updates (what stood at the month's end).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker.dosage.engine import DosageParams
from tracker.dosage.reports import daily_report
from tracker.dosage.store import stored_hot_spots
from tracker.foundation.clock import local_days_us
from tracker.foundation.models import (
    Assignment,
    AuditEvent,
    DeadLetter,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    PingRow,
)
from tracker.partnership.figures import harm_trend, monday, operation_hot_spots
from tracker.partnership.models import CANCELLED, DONE
from tracker.partnership.sara import actions_as_of, plans_table
from tracker.plan.compliance import RagThresholds, compliance_table, daily_compliance
from tracker.plan.models import Operation
from tracker.plan.storage import find_operation
from tracker.plan.targets import PlanError
from tracker.stops.figures import actions_frame, assurance_summary, review_quality, stops_frame
from tracker.stops.records import hot_spot_ids
from tracker.stops.search_figures import SMALL_NUMBER, presence_hours, search_figures

TEMPLATES = Path(__file__).resolve().parent / "templates"
BUCKET_US = 15 * 60 * 1_000_000  # every UTC offset in use is a whole number of quarter hours
THIN_DAY_SHARE = 0.5  # a day on which fewer than half the usual devices reported
RAG_COLOURS = {
    "green": "#2da44e",
    "amber": "#d4a72c",
    "red": "#cf222e",
    "over": "#8250df",
    "none": "#8c959f",
}
FORMATS = ("pdf", "html")


class BoardError(ValueError):
    """A board report that cannot be made: a bad month, an unknown operation, no days."""


def parse_month(text: str) -> date:
    """Return the first day of a YYYY-MM month between 1970 and 2099, or raise BoardError."""
    try:
        year, month = (int(part) for part in text.strip().split("-"))
        if len(text.strip()) != 7:
            raise ValueError
        first = date(year, month, 1)
    except (ValueError, TypeError):
        raise BoardError(f"expected a month as YYYY-MM, not {text[:20]!r}") from None
    if not 1970 <= year <= 2099:
        raise BoardError(f"{text.strip()} is outside the months handled, 1970-01 to 2099-12")
    return first


def month_end(first: date) -> date:
    return (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def previous_month(first: date) -> date:
    return (first - timedelta(days=1)).replace(day=1)


def last_complete_month(today: date) -> date:
    """The month before today's: the one a board meeting in this month reviews."""
    return previous_month(today.replace(day=1))


@dataclass(frozen=True)
class PlanVersion:
    """The plan the report judges against: how many times it had been loaded, when last and
    by whom (from the audit log)."""

    number: int
    loaded_at: datetime | None
    loaded_by: str | None


def plan_version(session: Session, operation: Operation, until: datetime) -> PlanVersion:
    loads = session.execute(
        select(AuditEvent.at, AuditEvent.actor)
        .where(
            AuditEvent.action == "plan.load",
            AuditEvent.subject == f"operation {operation.name}",
            AuditEvent.at <= until,
        )
        .order_by(AuditEvent.at, AuditEvent.id)
    ).all()
    if not loads:
        return PlanVersion(0, None, None)
    return PlanVersion(len(loads), loads[-1][0], loads[-1][1])


@dataclass
class BoardReport:
    """Everything the document shows, computed; board_html lays it out."""

    operation: str
    operation_start: date
    operation_end: date
    tz: str
    month: date
    first: date  # the month's days in the operation, up to today
    last: date
    generated_at: datetime
    plan: PlanVersion
    thresholds: RagThresholds
    headline: pd.DataFrame
    totals: dict[str, Any]
    previous_month: date | None
    weekly: pd.DataFrame
    weeks: list[tuple[date, date]]
    stops: dict[str, Any]
    reviews: dict[str, Any]
    review_summary: dict[str, Any]
    harm: pd.DataFrame | None
    harm_note: str
    actions: pd.DataFrame
    action_totals: dict[str, int]
    overdue_actions: list[dict[str, Any]]
    quality: dict[str, Any]
    charts: dict[str, str] = field(default_factory=dict)

    @property
    def in_progress(self) -> bool:
        return self.last < month_end(self.month)

    @property
    def title(self) -> str:
        return f"{self.operation}: board report, {self.month.strftime('%B %Y')}"


def board_report(
    session: Session,
    month: date,
    params: DosageParams,
    thresholds: RagThresholds,
    *,
    operation_name: str | None = None,
    buffer_m: float | None = None,
    now: datetime | None = None,
) -> BoardReport:
    """Compute the board report of an operation (by name, else the current one) for a month:
    its days in the operation, up to today if the month is not over."""
    now = now or datetime.now(UTC)
    try:
        operation = find_operation(session, operation_name, now)
    except PlanError as exc:
        raise BoardError(str(exc)) from exc
    zone = ZoneInfo(operation.tz)
    today = now.astimezone(zone).date()
    first = max(month, operation.start_date)
    last = min(month_end(month), operation.end_date, today)
    if first > last:
        raise BoardError(
            f"{operation.name} ran from {operation.start_date} to {operation.end_date}: it has "
            f"no days in {month.strftime('%Y-%m')} up to today ({today})"
        )
    spots = operation_hot_spots(session, operation)
    headline, totals, previous = _headline(session, operation, first, last, spots, thresholds)
    weekly, weeks = _weekly(session, operation, first, last, spots)
    stops, reviews, review_summary = _stop_figures(session, operation, first, last, buffer_m, today)
    harm, harm_note = harm_trend(session, operation, month, today)
    if harm is not None:  # blanks (months without data) as None, for the page
        harm = harm.astype(object).where(harm.notna(), None)
    end_moment = datetime.combine(last + timedelta(days=1), datetime.min.time(), zone)
    actions, action_totals, overdue = _actions(session, spots, end_moment, last, today)
    report = BoardReport(
        operation=operation.name,
        operation_start=operation.start_date,
        operation_end=operation.end_date,
        tz=operation.tz,
        month=month,
        first=first,
        last=last,
        generated_at=now.astimezone(zone),
        plan=plan_version(session, operation, now),
        thresholds=thresholds,
        headline=headline,
        totals=totals,
        previous_month=previous,
        weekly=weekly,
        weeks=weeks,
        stops=stops,
        reviews=reviews,
        review_summary=review_summary,
        harm=harm,
        harm_note=harm_note,
        actions=actions,
        action_totals=action_totals,
        overdue_actions=overdue,
        quality=_data_quality(session, first, last, zone, params),
    )
    report.charts = _charts(report)
    return report


# --- the sections ---------------------------------------------------------------------------

HEADLINE_COLUMNS = [
    "hotspot_id",
    "hotspot_name",
    "presence_minutes",
    "visits",
    "counted_presence_minutes",
    "target_presence_minutes",
    "presence_compliance",
    "presence_status",
    "previous_compliance",
    "change_points",
    "qualifying_visits",
    "target_visits",
]


def _month_rows(
    session: Session, operation: Operation, last: date, thresholds: RagThresholds
) -> pd.DataFrame:
    """The compliance table's "month" rows at `last`: the month's days up to `last`."""
    table = compliance_table(session, operation, last, thresholds)
    return table[table["period"] == "month"].set_index("hotspot_id")


def _headline(
    session: Session,
    operation: Operation,
    first: date,
    last: date,
    spots: Mapping[str, str],
    thresholds: RagThresholds,
) -> tuple[pd.DataFrame, dict[str, Any], date | None]:
    """Each hot spot's month against the plan, with last month's compliance and the change."""
    this = _month_rows(session, operation, last, thresholds)
    previous_last = first.replace(day=1) - timedelta(days=1)
    before = None
    if previous_last >= operation.start_date:
        before = _month_rows(session, operation, previous_last, thresholds)
    dosage = daily_report(session, first, last, list(spots))
    sums = dosage.groupby("hotspot_id")[["presence_minutes", "visits"]].sum()
    rows = []
    for hotspot_id, name in spots.items():
        row = this.loc[hotspot_id] if hotspot_id in this.index else None
        compliance = _value(row, "presence_compliance")
        earlier = None
        if before is not None and hotspot_id in before.index:
            earlier = _value(before.loc[hotspot_id], "presence_compliance")
        rows.append(
            {
                "hotspot_id": hotspot_id,
                "hotspot_name": name,
                "presence_minutes": float(sums.loc[hotspot_id, "presence_minutes"])
                if hotspot_id in sums.index
                else 0.0,
                "visits": int(sums.loc[hotspot_id, "visits"]) if hotspot_id in sums.index else 0,
                "counted_presence_minutes": _value(row, "counted_presence_minutes"),
                "target_presence_minutes": _value(row, "target_presence_minutes"),
                "presence_compliance": compliance,
                "presence_status": "none" if row is None else row["presence_status"],
                "previous_compliance": earlier,
                "change_points": None
                if compliance is None or earlier is None
                else round(100 * (compliance - earlier), 1),
                "qualifying_visits": _value(row, "qualifying_visits"),
                "target_visits": _value(row, "target_visits"),
            }
        )
    headline = pd.DataFrame(rows, columns=HEADLINE_COLUMNS)
    counted = float(headline["counted_presence_minutes"].fillna(0).sum())
    target = float(headline["target_presence_minutes"].fillna(0).sum())
    statuses = headline["presence_status"].value_counts().to_dict()
    totals = {
        "presence_minutes": float(headline["presence_minutes"].sum()),
        "visits": int(headline["visits"].sum()),
        "counted_presence_minutes": counted,
        "target_presence_minutes": target,
        "presence_compliance": round(counted / target, 4) if target else None,
        "statuses": {s: int(statuses.get(s, 0)) for s in RAG_COLOURS},
    }
    return headline, totals, (previous_last.replace(day=1) if before is not None else None)


def _value(row, column: str) -> float | None:
    if row is None or pd.isna(row[column]):
        return None
    return float(row[column])


def _weekly(
    session: Session, operation: Operation, first: date, last: date, spots: Mapping[str, str]
) -> tuple[pd.DataFrame, list[tuple[date, date]]]:
    """Presence, visits and the presence target per hot spot and week (Monday to Sunday, cut
    to the month's days)."""
    weeks = []
    start = monday(first)
    while start <= last:
        weeks.append((max(start, first), min(start + timedelta(days=6), last)))
        start += timedelta(days=7)
    dosage = daily_report(session, first, last, list(spots))
    daily = daily_compliance(session, operation, last, list(spots))
    daily = daily[(daily["date"] >= first) & (daily["date"] <= last)]
    week_of = {}
    for week_start, week_end in weeks:
        day = week_start
        while day <= week_end:
            week_of[day] = week_start
            day += timedelta(days=1)
    dosage["week_start"] = dosage["date"].map(week_of)
    targets = daily.assign(week_start=daily["date"].map(week_of))
    presence = dosage.groupby(["hotspot_id", "week_start"])[["presence_minutes", "visits"]].sum()
    target = targets.groupby(["hotspot_id", "week_start"])["target_presence_minutes"].sum(
        min_count=1
    )
    rows = []
    for hotspot_id, name in spots.items():
        for week_start, week_end in weeks:
            key = (hotspot_id, week_start)
            rows.append(
                {
                    "hotspot_id": hotspot_id,
                    "hotspot_name": name,
                    "week_start": week_start,
                    "week_end": week_end,
                    "presence_minutes": float(presence.loc[key, "presence_minutes"])
                    if key in presence.index
                    else 0.0,
                    "visits": int(presence.loc[key, "visits"]) if key in presence.index else 0,
                    "target_presence_minutes": None
                    if key not in target.index or pd.isna(target.loc[key])
                    else float(target.loc[key]),
                }
            )
    return pd.DataFrame(rows), weeks


def _stop_figures(
    session: Session,
    operation: Operation,
    first: date,
    last: date,
    buffer_m: float | None,
    today: date,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The month's search figures, as `tracker stops figures --from --to --operation` gives
    them, and how the review of those searches stands today."""
    frame = stops_frame(
        session, tz=operation.tz, operation_id=operation.id, from_day=first, to_day=last
    )
    spots = hot_spot_ids(stored_hot_spots(session), frame["longitude"], frame["latitude"], buffer_m)
    figures = search_figures(
        frame,
        presence_hours=presence_hours(session, first, last),
        hotspot_ids=pd.Series(spots, index=frame.index, dtype=object),
    )
    actions = actions_frame(session)
    actions = actions[actions["stop_id"].isin(frame["id"])]
    return figures, review_quality(frame, actions, today), assurance_summary(frame, today)


def _actions(
    session: Session,
    spots: Mapping[str, str],
    end_moment: datetime,
    last: date,
    today: date,
) -> tuple[pd.DataFrame, dict[str, int], list[dict[str, Any]]]:
    """Each hot spot's problem-solving actions as they stood at the end of `last`: done,
    open (open or in progress) and, of those, overdue."""
    stood = actions_as_of(session, end_moment, last)
    plans = plans_table(session, list(spots), today, spots)
    rows = []
    for hotspot_id, name in spots.items():
        mine = stood[stood["hotspot_id"] == hotspot_id]
        unfinished = ~mine["status"].isin((DONE, CANCELLED))
        version = plans.loc[plans["hotspot_id"] == hotspot_id, "version"]
        rows.append(
            {
                "hotspot_id": hotspot_id,
                "hotspot_name": name,
                "plan": bool(len(version) and version.iloc[0] > 0),
                "done": int(mine["status"].eq(DONE).sum()),
                "open": int(unfinished.sum()),
                "overdue": int(mine["overdue"].sum()),
                "cancelled": int(mine["status"].eq(CANCELLED).sum()),
            }
        )
    table = pd.DataFrame(rows)
    totals = {k: int(table[k].sum()) for k in ("done", "open", "overdue", "cancelled")}
    totals["plans"] = int(table["plan"].sum())
    overdue = stood[stood["overdue"] & stood["hotspot_id"].isin(list(spots))]
    return (
        table,
        totals,
        [
            {"hotspot_id": r.hotspot_id, "owner_agency": r.owner_agency, "due_date": r.due_date}
            for r in overdue.sort_values(["due_date", "hotspot_id"]).itertuples()
        ],
    )


def _data_quality(
    session: Session, first: date, last: date, zone: ZoneInfo, params: DosageParams
) -> dict[str, Any]:
    """Devices that sent nothing, days without positions or with few devices reporting,
    dead letters, and dosage still waiting to be recomputed."""
    start_us, end_us = local_days_us(first, last, zone)
    bucket = PingRow.t_us // BUCKET_US
    buckets = pd.DataFrame(
        session.execute(
            select(PingRow.device_id, bucket, func.count())
            .where(PingRow.t_us >= start_us, PingRow.t_us < end_us)
            .group_by(PingRow.device_id, bucket)
        ).all(),
        columns=["device_id", "bucket", "pings"],
    )
    days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
    if len(buckets):
        instants = pd.to_datetime(
            buckets["bucket"].astype("int64") * BUCKET_US, unit="us", utc=True
        )
        buckets["day"] = instants.dt.tz_convert(zone).dt.date
    else:
        buckets["day"] = []
    reporting = buckets.groupby("day")["device_id"].nunique().to_dict()
    per_day = [reporting.get(d, 0) for d in days]
    usual = float(np.median([n for n in per_day if n])) if any(per_day) else 0.0
    start, end = (datetime.fromtimestamp(us / 1_000_000, UTC) for us in (start_us, end_us))
    assigned = set(
        session.scalars(
            select(Assignment.device_id).where(
                Assignment.starts < end, (Assignment.ends.is_(None)) | (Assignment.ends > start)
            )
        )
    )
    reported = set(buckets["device_id"])
    letters = session.execute(
        select(DeadLetter.source, func.count())
        .where(DeadLetter.received_at >= start, DeadLetter.received_at < end)
        .group_by(DeadLetter.source)
    ).all()
    return {
        "devices_assigned": len(assigned),
        "devices_reporting": len(reported),
        "devices_silent": len(assigned - reported),
        "pings": int(buckets["pings"].sum()) if len(buckets) else 0,
        "days": len(days),
        "days_without_positions": [d for d, n in zip(days, per_day, strict=True) if n == 0],
        "thin_days": [
            d for d, n in zip(days, per_day, strict=True) if 0 < n < THIN_DAY_SHARE * usual
        ],
        "usual_devices_per_day": usual,
        "dead_letters": int(sum(n for _, n in letters)),
        "dead_letters_by_source": {source: int(n) for source, n in sorted(letters)},
        "pending_recompute": int(
            session.scalar(select(func.count()).select_from(DirtyDeviceDay))
            + session.scalar(select(func.count()).select_from(DirtyHotSpotDay))
        ),
        "max_gap_s": params.max_gap_s,
    }


# --- charts ----------------------------------------------------------------------------------


def _png(figure) -> str:
    """A matplotlib figure as a data: URI (PNG), drawn without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _charts(report: BoardReport) -> dict[str, str]:
    """Each chart on one set of axes: a grid of small charts per hot spot takes seconds to
    lay out, and the web page waits for it."""
    from matplotlib.figure import Figure

    charts = {}
    headline = report.headline.iloc[::-1]
    figure = Figure(figsize=(7.2, 0.2 * len(headline) + 1.0), layout="constrained")
    axes = figure.add_subplot()
    values = [100 * (v or 0) for v in headline["presence_compliance"]]
    colours = [RAG_COLOURS.get(s, RAG_COLOURS["none"]) for s in headline["presence_status"]]
    axes.barh(list(headline["hotspot_id"]), values, color=colours)
    for threshold, style in ((report.thresholds.green, "-"), (report.thresholds.amber, "--")):
        axes.axvline(100 * threshold, color="#57606a", linestyle=style, linewidth=0.8)
    axes.set_xlabel("presence compliance this month (%): counted ÷ planned minutes", fontsize=8)
    axes.tick_params(labelsize=7)
    charts["compliance"] = _png(figure)

    spots = list(dict.fromkeys(report.weekly["hotspot_id"]))
    figure = Figure(figsize=(7.2, 3.0), layout="constrained")
    axes = figure.add_subplot()
    x = np.arange(len(spots))
    width = 0.8 / max(len(report.weeks), 1)
    shades = np.linspace(0.35, 0.9, max(len(report.weeks), 1))
    for k, (week_start, week_end) in enumerate(report.weeks):
        week = report.weekly[report.weekly["week_start"] == week_start].set_index("hotspot_id")
        offset = x - 0.4 + width * (k + 0.5)
        label = week_start.strftime("%d %b") + (
            f"–{week_end.strftime('%d %b')}" if week_end != week_start else ""
        )
        axes.bar(
            offset,
            week.loc[spots, "presence_minutes"],
            width,
            color=(0.2, 0.45, shades[k]),
            label=label,
        )
        axes.scatter(
            offset,
            week.loc[spots, "target_presence_minutes"].astype(float),
            marker="_",
            color="#cf222e",
            s=40,
            linewidths=1.2,
        )
    axes.set_xticks(x, spots, rotation=90, fontsize=6)
    axes.tick_params(axis="y", labelsize=7)
    axes.set_ylabel("presence minutes", fontsize=8)
    axes.set_title("Presence per week (bars, week beginning) and the plan (red marks)", fontsize=8)
    axes.legend(fontsize=6, ncols=min(len(report.weeks), 6))
    charts["weekly"] = _png(figure)

    if report.harm is not None and len(report.harm):
        figure = Figure(figsize=(7.2, 2.6), layout="constrained")
        axes = figure.add_subplot()
        for area, label, colour in (
            ("hotspots", "hot spots", "#cf222e"),
            ("buffer", "ring around them", "#d4a72c"),
            ("rest", "rest of the area", "#0969da"),
        ):
            axes.plot(
                report.harm["month"],
                report.harm[f"{area}_harm"].astype(float),
                label=label,
                color=colour,
            )
        axes.set_ylabel("crime harm")
        axes.tick_params(axis="x", labelrotation=60, labelsize=6)
        axes.legend(fontsize=7)
        charts["harm"] = _png(figure)
    return charts


# --- the document ----------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(("html",)))
    env.filters["minutes"] = lambda v: "–" if v is None or v != v else f"{v:,.0f}"
    env.filters["pct"] = lambda v: "–" if v is None or v != v else f"{100 * v:.1f}%"
    env.filters["number"] = lambda v, d=1: "–" if v is None or v != v else f"{v:,.{d}f}"
    env.filters["count"] = lambda v: "–" if v is None or v != v else f"{int(v):,}"
    env.filters["day"] = lambda d: d.strftime("%a %d %b %Y")
    env.filters["signed"] = lambda v: "–" if v is None or v != v else f"{v:+.1f}"
    return env


def board_html(report: BoardReport) -> str:
    """The report as one self-contained HTML document (styles and charts inside it)."""
    template = _environment().get_template("board.html")
    return template.render(r=report, small_number=SMALL_NUMBER, colours=RAG_COLOURS)


def board_pdf(report: BoardReport) -> bytes:
    """The report as PDF: the same document, laid out for A4 by WeasyPrint."""
    from weasyprint import HTML  # slow to import: only when a PDF is asked for

    return HTML(string=board_html(report)).write_pdf()


def output_format(path: str) -> str:
    """The format a file name asks for: .pdf or .html (BoardError otherwise)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise BoardError(f"the report is written as .pdf or .html, not {Path(path).name!r}")
    return suffix
