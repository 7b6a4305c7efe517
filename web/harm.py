"""The Harm page (docs/harm.md): where harm concentrates and which places to choose, and
whether harm fell in the operation's hot spots; for supervisors and administrators.

The charts are drawn on the server with matplotlib (SVG, shown as an image: nothing fetched,
no script); every table is also a CSV download.
"""

from __future__ import annotations

import base64
import io
import unicodedata
from datetime import date

import numpy as np
from flask import Blueprint, abort, current_app, render_template, request, url_for
from markupsafe import Markup, escape
from sqlalchemy import func, select

from tracker.harm.crimes import month_text, parse_month
from tracker.harm.evaluate import AREAS, Evaluation, EvaluationError, add_months
from tracker.harm.figures import evaluate_operation, identify_stored
from tracker.harm.identify import DEFAULT_COUNT, Identification, IdentificationError
from tracker.harm.models import RecordedCrime
from tracker.harm.weights import load_weights
from tracker.plan.models import Operation
from tracker.plan.storage import find_operation
from tracker.plan.targets import PlanError
from web import maps
from web.auth import roles_required
from web.database import get_db
from web.security import script_nonce
from web.views import csv_response, table_rows, today, wants_csv

blueprint = Blueprint("harm", __name__)

HARM_ROLES = ("admin", "supervisor")
DEFAULT_MONTHS = 12  # identification looks at the last year of data unless asked otherwise
MAX_COUNT = 200
MAX_OPERATION_NAME = 200
AREA_COLOURS = {"hotspots": "#cf222e", "buffer": "#d4a72c", "rest": "#0969da"}
AREA_LABELS = {"hotspots": "Hot spots", "buffer": "Buffer ring", "rest": "Rest of the area"}
PLACE_COLUMNS = [
    ("rank", "Rank", "count"),
    ("name", "Name"),
    ("id", "Place"),
    ("harm", "Harm (days)", "number"),
    ("crimes", "Crimes", "count"),
    ("share_pct", "Share of harm (%)", "number"),
]
HOT_SPOT_COLUMNS = [
    ("hotspot_id", "Hot spot"),
    ("name", "Name"),
    ("harm_before", "Harm a month before", "number"),
    ("harm_during", "Harm a month during", "number"),
    ("change", "During / before", "number"),
    ("crimes_before", "Crimes before", "count"),
    ("crimes_during", "Crimes during", "count"),
]


def _month_argument(name: str, default: date | None) -> date | None:
    text = request.args.get(name)
    if not text:
        return default
    try:
        return parse_month(text)
    except ValueError as exc:
        abort(400, f"{name}: {exc}")


def _count_argument() -> int:
    text = request.args.get("count")
    if not text:
        return DEFAULT_COUNT
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        abort(400, f"count: expected a whole number from 1 to {MAX_COUNT}")
    return int(text)


# Text as SVG text, not glyph outlines: a smaller image, drawn several times faster.
CHART_STYLE = {"svg.fonttype": "none", "font.size": 8, "svg.hashsalt": "harm"}


def _svg_image(figure, description: str) -> Markup:
    """Return a matplotlib figure as an <img> of its SVG (a data: URL, which the CSP allows)."""
    import matplotlib

    buffer = io.BytesIO()
    with matplotlib.rc_context(CHART_STYLE):
        figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return Markup(  # noqa: S704 (base64 text and an escaped description)
        f'<img class="chart" style="width: 100%; height: auto" '
        f'src="data:image/svg+xml;base64,{data}" alt="{escape(description)}">'
    )


def _new_figure():
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: no global state shared by threads

    with matplotlib.rc_context(CHART_STYLE):
        figure = Figure(figsize=(8, 2.8))
        axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(True, color="#eaeef2")
    return figure, axes


def concentration_chart(result: Identification) -> Markup:
    """The share of harm against the share of places, most harmful first (log scale), with
    the chosen places marked."""
    curve = result.curve[result.curve["places"] > 0]
    figure, axes = _new_figure()
    axes.plot(curve["share_of_places"] * 100, curve["share_of_harm"] * 100, color="#cf222e")
    axes.set_xscale("log")
    if result.places:
        axes.scatter(
            [result.share_of_area * 100], [(result.capture.share_of_harm or 0) * 100], color="k"
        )
        axes.annotate(
            f"the {len(result.places)} chosen",
            (result.share_of_area * 100, (result.capture.share_of_harm or 0) * 100),
            xytext=(8, -4),
            textcoords="offset points",
        )
    axes.set_xlabel("share of places, most harmful first (%, log scale)")
    axes.set_ylabel("share of harm (%)")
    axes.set_ylim(0, 100)
    return _svg_image(
        figure,
        f"Concentration curve: the {len(result.places)} chosen places hold "
        f"{(result.capture.share_of_harm or 0):.1%} of harm in {result.share_of_area:.4%} of "
        "the area",
    )


def evaluation_chart(result: Evaluation) -> Markup:
    """Monthly harm in each area as an index (its baseline month average = 100), with the
    operation's start marked; months without data are gaps."""
    months = result.months
    figure, axes = _new_figure()
    positions = np.arange(len(months))
    for area in AREAS:
        baseline = result.areas[area].before
        if not baseline:
            continue
        values = months[f"{area}_harm"].to_numpy(dtype=float) / baseline * 100
        axes.plot(positions, values, color=AREA_COLOURS[area], label=AREA_LABELS[area], marker=".")
    start = len(result.periods.before) - 0.5
    axes.axvline(start, color="#57606a", linestyle="--")
    axes.annotate("operation starts", (start, 1.0), xycoords=("data", "axes fraction"),
                  xytext=(4, -12), textcoords="offset points")  # fmt: skip
    step = max(1, len(months) // 8)
    axes.set_xticks(positions[::step], months["month"].iloc[::step])
    axes.set_ylabel("harm (baseline month = 100)")
    axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=3, frameon=False)
    return _svg_image(figure, "Monthly harm in the hot spots, the buffer ring and the rest")


def _data_range(db) -> tuple[int, date | None, date | None]:
    count, first, last = db.execute(
        select(func.count(), func.min(RecordedCrime.month), func.max(RecordedCrime.month))
    ).one()
    return count, first, last


def _place_rows(result: Identification) -> list[dict]:
    table = result.places_table()
    return table_rows(table.assign(share_pct=table["share_of_harm"] * 100))


def _places_map(result: Identification):
    if not result.places:
        return None
    features = [
        {
            "type": "Feature",
            # The label on the map is the rank; the tooltip names the place.
            "properties": {
                "id": str(p.rank),
                "place": p.id,
                "name": p.name,
                "harm": f"{p.harm:,.1f} days",
                "crimes": p.crimes,
            },
            "geometry": p.geometry.__geo_interface__,
        }
        for p in result.places
    ]
    bounds = np.array([p.geometry.bounds for p in result.places])
    fmap = maps.new_map(
        (bounds[:, 0].min(), bounds[:, 1].min(), bounds[:, 2].max(), bounds[:, 3].max()),
        current_app.config["MAP_TILES"],
    )
    colours = {str(p.rank): "red" for p in result.places}
    maps.add_hot_spots(
        fmap,
        features,
        colours,
        ["id", "name", "place", "harm", "crimes"],
        ["Rank", "Name", "Place", "Harm", "Crimes"],
        labelled=True,
    )
    return maps.render(fmap, script_nonce())


@blueprint.get("/harm")
@roles_required(*HARM_ROLES)
def page():
    """Where harm concentrates, the places to choose, and the operation's result."""
    db = get_db()
    crimes, first, last = _data_range(db)
    to_month = _month_argument("to", last)
    from_month = _month_argument(
        "from", add_months(to_month, 1 - DEFAULT_MONTHS) if to_month else None
    )
    if from_month and to_month and from_month > to_month:
        abort(400, "from must not be after to")
    count = _count_argument()
    operation_name = request.args.get("operation") or None
    # No stored name is longer or holds a control character (PostgreSQL refuses NUL outright).
    if operation_name is not None and (
        len(operation_name) > MAX_OPERATION_NAME
        or any(unicodedata.category(c) == "Cc" for c in operation_name)
    ):
        abort(404, "no such operation")
    weights = load_weights()

    identification, identification_error = None, None
    if crimes:
        try:
            identification = identify_stored(db, weights, from_month, to_month, count=count)
        except IdentificationError as exc:
            identification_error = str(exc)
    operation, evaluation, evaluation_error, fallback_note = None, None, None, None
    try:
        operation = find_operation(db, operation_name)
    except PlanError as exc:
        if operation_name is not None:
            abort(404, str(exc))
        evaluation_error = str(exc)
    if operation is not None and crimes:
        try:
            evaluation = evaluate_operation(db, operation, weights, today())
        except EvaluationError as exc:
            evaluation_error = str(exc)
            if operation_name is None:
                # A new operation has nothing to judge yet: show the latest that has.
                earlier = _latest_judgeable(db, operation, weights)
                if earlier is not None:
                    fallback_note = (
                        f"{operation.name}: {exc}. The latest operation that can be judged:"
                    )
                    operation, evaluation = earlier

    if wants_csv():
        return _download(identification, evaluation, from_month, to_month)
    return render_template(
        "harm.html",
        crimes=crimes,
        first=month_text(first) if first else None,
        last=month_text(last) if last else None,
        period_from=month_text(from_month) if from_month else "",
        period_to=month_text(to_month) if to_month else "",
        count=count,
        weights=weights,
        identification=identification,
        identification_error=identification_error,
        places=_place_rows(identification) if identification else [],
        place_columns=PLACE_COLUMNS,
        concentration=concentration_chart(identification) if identification else None,
        map=_places_map(identification) if identification else None,
        operation=operation,
        evaluation=evaluation,
        evaluation_json=evaluation.to_json() if evaluation else None,
        evaluation_error=evaluation_error,
        fallback_note=fallback_note,
        evaluation_chart=evaluation_chart(evaluation) if evaluation else None,
        hot_spot_rows=table_rows(evaluation.hot_spots) if evaluation else [],
        hot_spot_columns=HOT_SPOT_COLUMNS,
        area_labels=AREA_LABELS,
        csv_url=lambda table: url_for(
            "harm.page",
            format="csv",
            table=table,
            **{"from": month_text(from_month)} if from_month else {},
            **{"to": month_text(to_month)} if to_month else {},
            count=count,
            operation=operation_name,
        ),
    )


def _latest_judgeable(db, current: Operation, weights) -> tuple[Operation, Evaluation] | None:
    """Return the latest-starting other operation with a complete month, and its evaluation."""
    others = db.scalars(
        select(Operation)
        .where(Operation.id != current.id)
        .order_by(Operation.start_date.desc(), Operation.id.desc())
    )
    for operation in others:
        try:
            return operation, evaluate_operation(db, operation, weights, today())
        except EvaluationError:
            continue
    return None


def _download(
    identification: Identification | None,
    evaluation: Evaluation | None,
    from_month: date | None,
    to_month: date | None,
):
    """The CSV of one table (?table=places|concentration|summary|months|hotspots)."""
    table = request.args.get("table", "places")
    if table in ("places", "concentration"):
        if identification is None:
            abort(404, "no recorded crime in the period")
        period = f"{month_text(from_month)}-to-{month_text(to_month)}"
        frame = identification.places_table() if table == "places" else identification.curve
        return csv_response(frame, f"harm-{table}-{period}.csv")
    if table in ("summary", "months", "hotspots"):
        if evaluation is None:
            abort(404, "no evaluation: no operation, no complete month, or no recorded crime")
        frame = {
            "summary": evaluation.summary_table,
            "months": lambda: evaluation.months,
            "hotspots": lambda: evaluation.hot_spots,
        }[table]()
        return csv_response(frame, f"harm-evaluation-{table}.csv")
    abort(404, "no such table: places, concentration, summary, months or hotspots")
