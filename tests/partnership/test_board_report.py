"""The monthly board report (docs/partners.md, "The board report"): a month of the demo
database rendered to PDF and to HTML by `tracker report board`, its text read back (pypdf),
and its figures checked against `tracker report`, `tracker plan compliance` and `tracker stops
figures`; problem-solving actions counted as they stood at the month's end; bad months and
file names refused.

Uses the web tests' demo database (tests/web/test_web.py), built once per test session.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pypdf
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, func, select

from tests.web import test_web
from tests.web.test_web import Demo, make_app, sign_in
from tracker.cli import main
from tracker.foundation.clock import local_days_us
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.models import PingRow
from tracker.harm.models import RecordedCrime
from tracker.partnership.board import month_end
from tracker.partnership.models import SaraAction, SaraActionUpdate, SaraPlan, SaraVersion
from tracker.partnership.sara import Editor, add_action, partner_update
from tracker.plan.storage import find_operation

demo = test_web.demo
TAGS = re.compile(r"<[^>]+>")
STYLE = re.compile(r"<style\b.*?</style>", re.DOTALL)


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def month(demo: Demo) -> dict:
    """The demo operation's first month: its name, its days in the operation, to today."""
    engine = make_engine(demo.url)
    with session_factory(engine)() as session:
        operation = find_operation(session)  # the one running today
        crime = session.scalar(select(func.count()).select_from(RecordedCrime))
        name, start, end, tz = (
            operation.name,
            operation.start_date,
            operation.end_date,
            operation.tz,
        )
    engine.dispose()
    first = start.replace(day=1)
    today = datetime.now(ZoneInfo(tz)).date()
    return {
        "operation": name,
        "month": first.strftime("%Y-%m"),
        "first": start,
        "last": min(month_end(first), end, today),
        "tz": tz,
        "crime_loaded": bool(crime),
    }


@pytest.fixture(scope="module")
def documents(demo: Demo, month: dict, tmp_path_factory) -> dict[str, str]:
    """The report as `tracker report board` writes it: the PDF's text and the HTML's."""
    folder = tmp_path_factory.mktemp("board")
    texts = {}
    for suffix in ("pdf", "html"):
        out = folder / f"board.{suffix}"
        said = run(
            "report",
            "board",
            "--month",
            month["month"],
            "--operation",
            month["operation"],
            "--out",
            str(out),
            "--db",
            demo.url,
        )
        assert said.startswith(f"{out}: {month['operation']}, {month['first']} to {month['last']}")
        if suffix == "pdf":
            reader = pypdf.PdfReader(io.BytesIO(out.read_bytes()))
            texts["pdf"] = "\n".join(page.extract_text() for page in reader.pages)
            texts["pages"] = str(len(reader.pages))
        else:
            texts["raw_html"] = out.read_text(encoding="utf-8")
            texts["html"] = html.unescape(TAGS.sub(" ", STYLE.sub(" ", texts["raw_html"])))
    return texts


@pytest.fixture(scope="module")
def dosage(demo: Demo, month: dict) -> pd.DataFrame:
    """`tracker report` over the month's days."""
    rows = json.loads(
        run(
            "report",
            "--from",
            month["first"].isoformat(),
            "--to",
            month["last"].isoformat(),
            "--format",
            "json",
            "--db",
            demo.url,
        )
    )
    return pd.DataFrame(rows)


def in_row(text: str, hotspot_id: str, cells: str) -> bool:
    """Whether the hot spot's row holds these cells, in order (a long name may wrap the row
    over lines, but the row ends where the next hot spot's begins)."""
    for match in re.finditer(rf"\b{hotspot_id}\b", text):
        row = re.split(r"\bLE\d\d\b", text[match.end() : match.end() + 200])[0]
        if cells in " ".join(row.split()):
            return True
    return False


def minutes(value: float) -> str:
    return f"{value:,.0f}"


@pytest.mark.parametrize("kind", ["pdf", "html"])
def test_the_report_states_its_period_time_zone_plan_version_and_generation(documents, month, kind):
    text = " ".join(documents[kind].split())
    first, last = (month[k].strftime("%a %d %b %Y") for k in ("first", "last"))
    assert f"{month['operation']}: board report, " in text
    assert f"Period {first} to {last}" in text
    assert f"Time zone {month['tz']}" in text
    assert re.search(r"Plan version 1, loaded \d{4}-\d\d-\d\d \d\d:\d\d (?:GMT|BST) by demo", text)
    generated = re.search(r"Generated (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (GMT|BST)", text)
    assert generated
    assert abs(
        datetime.fromisoformat(generated.group(1)) - datetime.now().replace(microsecond=0)
    ) < timedelta(hours=2)


@pytest.mark.parametrize("kind", ["pdf", "html"])
def test_the_headline_is_the_months_dosage_and_compliance_of_each_hot_spot(
    documents, dosage, demo, month, kind
):
    text = documents[kind]
    compliance = pd.DataFrame(
        json.loads(
            run(
                "plan",
                "compliance",
                "--date",
                month["last"].isoformat(),
                "--operation",
                month["operation"],
                "--format",
                "json",
                "--db",
                demo.url,
            )
        )
    )
    compliance = compliance[compliance["period"] == "month"].set_index("hotspot_id")
    sums = dosage.groupby("hotspot_id")[["presence_minutes", "visits"]].sum()
    words = {
        "green": "GREEN",
        "amber": "AMBER",
        "red": "RED",
        "over": "OVER MAX",
        "none": "NO TARGET",
    }
    wrong = []
    for hotspot_id, row in compliance.iterrows():
        presence, visits = sums.loc[hotspot_id] if hotspot_id in sums.index else (0.0, 0)
        counted, target = row["counted_presence_minutes"], row["target_presence_minutes"]
        cells = f"{minutes(presence)} {int(visits):,} {minutes(counted)} / {minutes(target)} "
        if row["presence_compliance"] == row["presence_compliance"]:
            cells += f"{100 * row['presence_compliance']:.1f}% {words[row['presence_status']]}"
        if not in_row(text, hotspot_id, cells):
            wrong.append((hotspot_id, cells))
    assert wrong == []
    totals = (
        f"All hot spots {minutes(dosage['presence_minutes'].sum())} {int(dosage['visits'].sum()):,}"
    )
    assert totals in " ".join(text.split())


@pytest.mark.parametrize("kind", ["pdf", "html"])
def test_patrol_per_week_is_the_sum_of_the_weeks_days(documents, dosage, kind):
    dosage = dosage.assign(
        week=[
            date.fromisoformat(d) - timedelta(days=date.fromisoformat(d).weekday())
            for d in dosage["date"]
        ]
    )
    weekly = dosage.groupby(["hotspot_id", "week"])[["presence_minutes", "visits"]].sum()
    weekly_text = documents[kind].split("2. Patrol", 1)[1].split("3. Stop and search", 1)[0]
    wrong = []
    for hotspot_id, weeks in weekly.groupby(level=0):
        cells = " ".join(
            f"{minutes(w['presence_minutes'])} / {int(w['visits']):,}" for _, w in weeks.iterrows()
        )
        if not in_row(weekly_text, hotspot_id, cells):
            wrong.append((hotspot_id, cells))
    assert wrong == []


@pytest.mark.parametrize("kind", ["pdf", "html"])
def test_stop_and_search_is_as_tracker_stops_figures_gives_it(documents, demo, month, kind):
    figures = json.loads(
        run(
            "stops",
            "figures",
            "--from",
            month["first"].isoformat(),
            "--to",
            month["last"].isoformat(),
            "--operation",
            month["operation"],
            "--format",
            "json",
            "--db",
            demo.url,
        )
    )
    text = " ".join(documents[kind].split())
    assert figures["searches"] > 0
    assert f"Searches: {figures['searches']:,}" in text
    assert f"Arrests: {figures['arrests']} ({figures['arrest_rate']:.1f}% of searches)" in text
    assert (
        f"Positive outcomes: {figures['positive_outcomes']} "
        f"({figures['positive_outcome_rate']:.1f}% of searches)"
    ) in text
    assert f"of the {figures['find_rate_known']} searches where the link" in text
    assert f"Ethnicity not stated: {figures['not_stated']} (set aside)" in text
    for group in figures["ethnicity"]:
        assert f"{group['group']} {group['searches']} " in text
    for row in figures["by_outcome"]:
        assert f"{row['value']} {row['searches']}" in text
    for row in figures["by_hotspot"]:
        if row["searches"]:
            assert (
                f"{row['hotspot_id']} {row['searches']} {row['presence_hours']:.2f} "
                f"{row['searches_per_patrol_hour']:.2f}"
            ) in text
    assert "These are counts, not rates" in text  # the caveats of the assurance figures


def test_data_quality_counts_the_months_positions_and_the_document_fetches_nothing(
    documents, demo, month
):
    engine = make_engine(demo.url)
    start_us, end_us = local_days_us(month["first"], month["last"], ZoneInfo(month["tz"]))
    with session_factory(engine)() as session:
        pings = session.scalar(
            select(func.count()).where(PingRow.t_us >= start_us, PingRow.t_us < end_us)
        )
    engine.dispose()
    text = " ".join(documents["pdf"].split())
    assert f"Positions stored: {pings:,};" in text
    assert "Devices assigned in the period: 12; sent positions: 12; silent all period: 0" in text
    assert "Days without any position: 0 of" in text
    if month["crime_loaded"]:
        harm = text.split("4. Crime harm", 1)[1].split("5. Problem solving", 1)[0]
        assert f"{month['first'].strftime('%Y-%m')} excluded" in harm  # began part-way
        assert len(re.findall(r"\d{4}-\d\d before", harm)) == 12  # the baseline year
    else:
        assert "No crime data is loaded" in text  # said, not left blank
    raw = documents["raw_html"]
    sources = re.findall(r'(?:src|href)="([^"]+)"', raw)
    assert all(s.startswith("data:") for s in sources)  # charts (PNG) and the empty icon
    assert len([s for s in sources if s.startswith("data:image/png;base64,")]) >= 2
    assert "http://" not in raw and "https://" not in raw
    assert int(documents["pages"]) >= 3


def test_actions_are_counted_as_they_stood_at_the_end_of_the_month(demo, month, tmp_path):
    """On a copy of the demo: LE01's plan has an action done in the month, one done after it
    (open at its end), one overdue at its end, and one added after it (not counted)."""
    copy = tmp_path / "demo.db"
    shutil.copyfile(demo.url.removeprefix("sqlite:///"), copy)
    url = f"sqlite:///{copy}"
    zone = ZoneInfo(month["tz"])
    start = datetime.combine(month["first"], datetime.min.time(), zone).astimezone(UTC)
    after = datetime.combine(month["last"] + timedelta(days=1), datetime.min.time(), zone)
    editor, council = Editor("test"), Editor("test", "City Council")
    engine = make_engine(url)
    with session_factory(engine).begin() as session:
        # The demo's own plans aside: only the actions made here are counted.
        for model in (SaraActionUpdate, SaraAction, SaraVersion, SaraPlan):
            session.execute(delete(model))

        def action(text: str, due: date, at: datetime) -> int:
            return add_action(
                session,
                "LE01",
                editor,
                description=text,
                owner_agency="City Council",
                owner="Parks team",
                due_date=due,
                at=at,
            ).id

        done_in = action("Clear the path", month["first"], start + timedelta(hours=1))
        done_after = action(
            "Fix the lights", month["last"] + timedelta(days=9), start + timedelta(hours=2)
        )
        overdue = action("Move the bins", month["first"], start + timedelta(hours=3))
        action("Paint the underpass", month["last"], after + timedelta(hours=1))
        partner_update(
            session, done_in, council, status="done", note="Cleared", at=start + timedelta(hours=5)
        )
        partner_update(
            session, done_after, council, status="done", note="Fixed", at=after + timedelta(hours=2)
        )
    engine.dispose()
    out = tmp_path / "board.html"
    run("report", "board", "--month", month["month"], "--out", str(out), "--db", url)
    text = " ".join(html.unescape(TAGS.sub(" ", out.read_text(encoding="utf-8"))).split())
    assert re.search(r"LE01 Clock Tower and Haymarket yes 1 2 1 ", text), text[
        text.find("5. Problem") :
    ][:600]
    assert "1 done, 2 open (in progress included), of which 1 overdue" in text
    assert re.search(r"LE02 \S.*? none yet 0 0 0", text)
    assert f"LE01 City Council {month['first'].strftime('%a %d %b %Y')}" in text  # overdue list
    assert overdue


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13", "--out", "x.pdf"], "expected a month as YYYY-MM, not '2026-13'"),
        (["--month", "1969-12", "--out", "x.pdf"], "outside the months handled"),
        (["--month", "2026-11", "--out", "x.docx"], "written as .pdf or .html, not 'x.docx'"),
    ],
)
def test_bad_months_and_file_names_are_refused(args, message):
    result = CliRunner().invoke(main, ["report", "board", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_a_month_outside_the_operation_or_an_unknown_operation_is_refused(demo, month, tmp_path):
    before = (month["first"].replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    out = str(tmp_path / "x.pdf")
    early = CliRunner().invoke(
        main, ["report", "board", "--month", before, "--out", out, "--db", demo.url]
    )
    unknown = CliRunner().invoke(
        main,
        [
            "report",
            "board",
            "--month",
            month["month"],
            "--operation",
            "Nope",
            "--out",
            out,
            "--db",
            demo.url,
        ],
    )
    assert early.exit_code == 1 and f"no days in {before}" in early.output
    assert unknown.exit_code == 1 and "no operation named 'Nope'" in unknown.output
    assert not (tmp_path / "x.pdf").exists()


def test_the_daily_report_is_unchanged_beside_the_board_command(demo, month, dosage):
    csv = run(
        "report",
        "--from",
        month["first"].isoformat(),
        "--to",
        month["first"].isoformat(),
        "--db",
        demo.url,
    )
    assert csv.splitlines()[0] == "hotspot_id,date,presence_minutes,officer_minutes,visits"
    assert len(csv.splitlines()) == 1 + len(dosage[dosage["date"] == month["first"].isoformat()])


def test_supervisors_download_the_pdf_from_the_board_page(demo, month):
    client = sign_in(make_app(demo), demo, "supervisor")
    page = client.get("/board")
    response = client.get(f"/board/report?month={month['month']}&format=pdf")

    assert page.status_code == 200
    assert f"month={month['month']}" in html.unescape(page.text)
    assert response.status_code == 200
    assert response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == (
        f"attachment; filename=board-Operation-Guardian-DEMONSTRATION-{month['month']}.pdf"
    )
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(response.data)).pages)
    assert f"{month['operation']}: board report" in text
    assert client.get("/board/report?month=2026-1").status_code == 400
    assert client.get("/board/report?format=docx").status_code == 400
    assert sign_in(make_app(demo), demo, "assurance").get("/board").status_code == 403
