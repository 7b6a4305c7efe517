"""The monthly board report in the web app (docs/partners.md, "The board report"), for
supervisors and administrators: a page to choose the operation and month, and the report as
HTML or PDF, the same document `tracker report board` writes."""

from __future__ import annotations

import re
from datetime import date, timedelta

from flask import Blueprint, Response, abort, render_template, request
from sqlalchemy import select

from tracker.foundation import settings
from tracker.partnership.board import (
    FORMATS,
    BoardError,
    board_html,
    board_pdf,
    board_report,
    last_complete_month,
    month_end,
    parse_month,
)
from tracker.plan.models import Operation
from web.auth import roles_required
from web.database import get_db
from web.views import download_response, operation_or_none, params, thresholds, today

blueprint = Blueprint("board", __name__)

BOARD_ROLES = ("admin", "supervisor")
MAX_OPERATION_NAME = 200  # the operations column
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def default_month() -> date:
    """The month a board meeting now reviews: the last complete one, or the operation's
    first if it began since."""
    month = last_complete_month(today())
    operation = operation_or_none()
    if operation is not None and month_end(month) < operation.start_date:
        return operation.start_date.replace(day=1)
    return month


blueprint.add_app_template_global(default_month, "board_month")


def months_of(operation: Operation) -> list[date]:
    """The months of an operation up to this one, newest first."""
    months = []
    month = operation.start_date.replace(day=1)
    last = min(operation.end_date, today())
    while month <= last:
        months.append(month)
        month = month_end(month) + timedelta(days=1)
    return months[::-1]


@blueprint.get("/board")
@roles_required(*BOARD_ROLES)
def page():
    """Choose the operation and month of a board report; links to it as HTML and PDF."""
    operations = get_db().scalars(select(Operation).order_by(Operation.start_date.desc())).all()
    current = operation_or_none()
    return render_template(
        "board.html",
        operations=operations,
        current=current,
        months={o.name: months_of(o) for o in operations},
        default_month=default_month(),
    )


@blueprint.get("/board/report")
@roles_required(*BOARD_ROLES)
def report():
    """The board report of `month` (YYYY-MM; default the last complete month) for
    `operation` (its name; default the current one), as `format` html (default) or pdf."""
    fmt = request.args.get("format", "html")
    if fmt not in FORMATS:
        abort(400, f"format must be {' or '.join(FORMATS)}")
    try:
        month = parse_month(request.args["month"]) if "month" in request.args else default_month()
    except BoardError as exc:
        abort(400, f"month: {exc}")
    name = request.args.get("operation") or None
    if name is not None and (len(name) > MAX_OPERATION_NAME or not name.isprintable()):
        abort(404, "no such operation")
    try:
        document = board_report(
            get_db(),
            month,
            params(),
            thresholds(),
            operation_name=name,
            buffer_m=settings.get("TRACKER_STOP_BUFFER_M"),
        )
    except BoardError as exc:
        abort(404, str(exc))
    if fmt == "html":
        return Response(board_html(document), mimetype="text/html")
    slug = _UNSAFE_IN_NAME.sub("-", document.operation).strip("-") or "operation"
    name = f"board-{slug}-{month.strftime('%Y-%m')}.pdf"
    return download_response(board_pdf(document), name, "application/pdf")
