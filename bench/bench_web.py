"""Benchmark of the web pages over a year of stored aggregates (issue 4, item 7).

    .venv/bin/python bench/bench_web.py [--runs 20] [--repeats 3] [--postgres [URL]]
        [--profile N] [--db FILE] [--reuse-db]

Builds a database (SQLite in a temporary folder; optionally also a private schema in
PostgreSQL) holding a 12-month operation that ends today:

- the 25 demo hot spots (geofences/leicestershire_demo.geojson, via replace_hot_spots);
- the demo plan (geofences/demo_plan.yaml) with every date shifted so that the operation
  runs for the 365 days ending today (windows, phases and targets unchanged);
- 100 officers (PC4100..PC4199), each carrying one device (radio-001..radio-100) all year;
- synthetic stored aggregates for every hot spot and day, inserted with bulk Core inserts
  (fixed seed, vectorised): 2-5 hot spot visits a day of 5-25 minutes between 07:00 and
  23:00 local time, `daily_dosage`, `hourly_presence` (each visit split over the clock hours
  it covers), hot spot `visits`, `device_daily_dosage` and device `visits` for
  --officers-per-spot-day officers in every hot spot and day (default 100: every officer,
  912,500 rows; each officer is credited 3-10 pings 15-30 s apart inside one of the day's
  visits, and has a device visit when that is 2 minutes or more), and the matching
  `credited_spans` (one per ping pair) of the last --span-days days (default 28; the
  service keeps spans for good, so --span-days 365 is what a year-old database holds).

Then, with the Flask test client signed in as a supervisor, it times GET /overview,
GET /hotspots/LE01, GET /hotspots/LE13, GET /tasking and GET /api/tasking (warm-up once,
then --runs rounds, pages interleaved, all of it --repeats times), and two trivial pages
as a baseline (GET /login and GET /api/hotspots): the wall time of `client.get` (the whole
server-side handling) and
its CPU time, the size of the HTML, and the size of the static files each page loads. The
median reported is the median of the repeats' medians; the ratio divides each repeat's
median by the median of GET /login in the same repeat (so a busy machine, which slows
both, moves it less), and takes the median of those ratios. Targets: each page's median at
most 100 ms and under 1.5 MB (issue 4); the overview at most 30 ms and a hot spot page at
most 50 ms, the tasking page and API at most 50 ms (issue 10). --profile N prints, per
page, the N functions of most cumulative time under cProfile (on the same database, after
the timing).

--save-figures FILE / --compare-figures FILE write or check (exactly) the tables behind the
pages (compliance_table, hot_spot_overview, daily_compliance, cumulative_series for every
hot spot, hot_spot_visits, hour_by_weekday, officer_figures) and the pages' HTML with the
per-request nonce, CSRF token and folium element ids masked, so a change for speed can be
shown to leave every figure identical. Where the code has faster routes to the same tables
(compliance.overview_table, compliance.hot_spot_tables) their results are checked against
the saved tables of the slower routes. --gc-freeze calls gc.freeze() after start-up (the
app itself does not), to show what Python's full garbage collections add to the p90.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import os
import pickle
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402

from bench.machine import machine_info  # noqa: E402
from tracker.accounts.users import create_user  # noqa: E402
from tracker.dosage.devices import AssignmentRow, load_assignments  # noqa: E402
from tracker.dosage.engine import DosageParams  # noqa: E402
from tracker.dosage.geofence import load_hot_spots  # noqa: E402
from tracker.dosage.recompute import replace_hot_spots  # noqa: E402
from tracker.foundation.database import make_engine, session_factory, upgrade  # noqa: E402
from tracker.foundation.models import (  # noqa: E402
    CreditedSpan,
    DailyDosage,
    DeviceDailyDosage,
    HourlyPresence,
    Visit,
)
from tracker.plan.reader import parse_plan  # noqa: E402
from tracker.plan.storage import load_plan  # noqa: E402

DEMO_HOT_SPOTS = ROOT / "geofences" / "leicestershire_demo.geojson"
DEMO_PLAN = ROOT / "geofences" / "demo_plan.yaml"
DEMO_PLAN_START = date(2026, 6, 1)
SEED = 20261126
OFFICERS = 100
DAYS = 365
SPAN_DAYS = 28
US = 1_000_000
USERNAME = "bench-supervisor"
PAGES = ("/overview", "/hotspots/LE01", "/hotspots/LE13", "/tasking", "/api/tasking")
BASELINES = ("/login", "/api/hotspots")
TARGET_MS = 100.0
TARGET_BYTES = 1_500_000
# Issue 10's targets, median server time per page.
PAGE_TARGETS_MS = {
    "/overview": 30.0,
    "/hotspots/LE01": 50.0,
    "/hotspots/LE13": 50.0,
    "/tasking": 50.0,
    "/api/tasking": 50.0,
}


# --------------------------------------------------------------------------- the database


def device_name(n: int) -> str:
    return f"radio-{n + 1:03d}"


def officer_of(n: int) -> str:
    return f"PC{4100 + n}"


def shifted_plan_text(first: date) -> str:
    """Return the demo plan with every date moved so the operation starts on `first`."""
    shift = first - DEMO_PLAN_START
    source = DEMO_PLAN.read_text(encoding="utf-8")
    source = re.sub(
        r"^operation: .*$", "operation: Benchmark operation (synthetic)", source, flags=re.MULTILINE
    )
    return re.sub(
        r"\d{4}-\d{2}-\d{2}", lambda m: (date.fromisoformat(m[0]) + shift).isoformat(), source
    )


def _insert(connection, table, columns: dict[str, list], chunk: int = 50_000) -> int:
    """Insert column lists with executemany in chunks; return the rows inserted."""
    names = list(columns)
    values = list(columns.values())
    n = len(values[0]) if values else 0
    for low in range(0, n, chunk):
        rows = [
            dict(zip(names, row, strict=True))
            for row in zip(*(v[low : low + chunk] for v in values), strict=True)
        ]
        connection.execute(table.insert(), rows)
    return n


def build_database(
    url: str,
    today: date,
    params: DosageParams,
    officers_per_spot_day: int,
    span_days: int = SPAN_DAYS,
    seed: int = SEED,
) -> tuple[dict[str, int], str]:
    """Create the schema and fill it; return row counts and the supervisor's password."""
    engine = make_engine(url)
    upgrade(engine)
    factory = session_factory(engine)
    zone = params.zone
    first = today - timedelta(days=DAYS - 1)
    hot_spots = load_hot_spots(DEMO_HOT_SPOTS)
    password = secrets.token_urlsafe(16)
    with factory.begin() as session:
        replace_hot_spots(session, hot_spots, params)
        assigned = datetime.combine(first - timedelta(days=30), dtime(0), tzinfo=UTC)
        load_assignments(
            session,
            [
                AssignmentRow(
                    n + 2, device_name(n), officer_of(n), f"Officer {n + 1:03d}", assigned, None
                )
                for n in range(OFFICERS)
            ],
            actor="bench",
        )
        load_plan(session, parse_plan(shifted_plan_text(first), source="bench plan"), actor="bench")
        create_user(session, USERNAME, "supervisor", password, actor="bench")

    rng = np.random.default_rng(seed)
    ids = sorted(h.id for h in hot_spots)
    n_spots = len(ids)
    days = [first + timedelta(days=i) for i in range(DAYS)]
    # UTC of 07:00 local each day; 07:00-23:00 holds no DST change, so offsets are exact.
    seven_us = np.array(
        [
            (
                datetime.combine(d, dtime(7), tzinfo=zone).astimezone(UTC)
                - datetime(1970, 1, 1, tzinfo=UTC)
            )
            // timedelta(microseconds=1)
            for d in days
        ],
        dtype=np.int64,
    )

    # Hot spot visits: 2-5 a day, one in each equal slot of 07:00-23:00.
    per_cell = rng.integers(2, 6, size=n_spots * DAYS)  # cell = spot * DAYS + day
    cell = np.repeat(np.arange(n_spots * DAYS), per_cell)
    offsets = np.concatenate([[0], np.cumsum(per_cell)[:-1]])
    slot = np.arange(len(cell)) - offsets[cell]
    slot_s = (16 * 3600) // per_cell[cell]
    duration_s = rng.integers(300, 1501, size=len(cell))
    start_s = slot * slot_s + (rng.random(len(cell)) * (slot_s - duration_s)).astype(np.int64)
    v_spot, v_day = np.divmod(cell, DAYS)
    v_start_us = seven_us[v_day] + start_s * US
    v_end_us = v_start_us + duration_s * US

    # Officers: the same number in every hot spot and day, each in one of its visits.
    k = officers_per_spot_day
    n_rows = n_spots * DAYS * k
    d_cell = np.repeat(np.arange(n_spots * DAYS), k)
    if k >= OFFICERS:
        d_officer = np.tile(np.arange(OFFICERS), n_spots * DAYS)
    else:
        d_officer = np.argsort(rng.random((n_spots * DAYS, OFFICERS)), axis=1)[:, :k].ravel()
    d_visit = offsets[d_cell] + (rng.random(n_rows) * per_cell[d_cell]).astype(np.int64)
    pings = rng.integers(3, 11, size=n_rows)  # 3-10 pings, so 2-9 spans
    interval_s = rng.integers(15, 31, size=n_rows)
    spans = pings - 1
    officer_s = spans * interval_s
    room = duration_s[d_visit] - officer_s
    d_start_us = v_start_us[d_visit] + (rng.random(n_rows) * room).astype(np.int64) * US
    officer_us = officer_s * US
    device_visit = officer_s >= params.min_visit_s
    d_spot, d_day = np.divmod(d_cell, DAYS)

    presence_us = (
        np.bincount(cell, weights=duration_s, minlength=n_spots * DAYS).astype(np.int64) * US
    )
    daily_officer_us = (
        np.bincount(d_cell, weights=officer_s, minlength=n_spots * DAYS).astype(np.int64) * US
    )
    visit_devices = np.maximum(np.bincount(d_visit, minlength=len(cell)), 1)

    # Hourly presence: each visit split over the local clock hours 07..22 it covers.
    hour_rows = []
    for hour in range(16):
        low, high = hour * 3600, (hour + 1) * 3600
        overlap = np.clip(
            np.minimum(start_s + duration_s, high) - np.maximum(start_s, low), 0, None
        )
        summed = np.bincount(cell, weights=overlap, minlength=n_spots * DAYS).astype(np.int64)
        nonzero = np.flatnonzero(summed)
        hour_rows.append((nonzero, np.full(len(nonzero), 7 + hour), summed[nonzero] * US))
    h_cell = np.concatenate([r[0] for r in hour_rows])
    h_hour = np.concatenate([r[1] for r in hour_rows])
    h_presence = np.concatenate([r[2] for r in hour_rows])
    order = np.lexsort((h_hour, h_cell))
    h_cell, h_hour, h_presence = h_cell[order], h_hour[order], h_presence[order]

    ids_arr = np.array(ids, dtype=object)
    days_arr = np.array(days, dtype=object)
    devices_arr = np.array([device_name(n) for n in range(OFFICERS)], dtype=object)
    counts: dict[str, int] = {}
    with engine.begin() as connection:
        all_cells = np.arange(n_spots * DAYS)
        counts["daily_dosage"] = _insert(
            connection,
            DailyDosage.__table__,
            {
                "hotspot_id": ids_arr[all_cells // DAYS].tolist(),
                "day": days_arr[all_cells % DAYS].tolist(),
                "presence_us": presence_us.tolist(),
                "officer_us": daily_officer_us.tolist(),
                "visits": per_cell.tolist(),
            },
        )
        counts["hourly_presence"] = _insert(
            connection,
            HourlyPresence.__table__,
            {
                "hotspot_id": ids_arr[h_cell // DAYS].tolist(),
                "day": days_arr[h_cell % DAYS].tolist(),
                "hour": h_hour.tolist(),
                "presence_us": h_presence.tolist(),
            },
        )
        counts["visits (hot spot)"] = _insert(
            connection,
            Visit.__table__,
            {
                "hotspot_id": ids_arr[v_spot].tolist(),
                "device_id": [""] * len(cell),
                "day": days_arr[v_day].tolist(),
                "start_us": v_start_us.tolist(),
                "end_us": v_end_us.tolist(),
                "presence_us": (duration_s * US).tolist(),
                "devices": visit_devices.tolist(),
            },
        )
        counts["device_daily_dosage"] = _insert(
            connection,
            DeviceDailyDosage.__table__,
            {
                "hotspot_id": ids_arr[d_spot].tolist(),
                "device_id": devices_arr[d_officer].tolist(),
                "day": days_arr[d_day].tolist(),
                "officer_us": officer_us.tolist(),
                "visits": device_visit.astype(np.int64).tolist(),
            },
        )
        kept = np.flatnonzero(device_visit)
        counts["visits (device)"] = _insert(
            connection,
            Visit.__table__,
            {
                "hotspot_id": ids_arr[d_spot[kept]].tolist(),
                "device_id": devices_arr[d_officer[kept]].tolist(),
                "day": days_arr[d_day[kept]].tolist(),
                "start_us": d_start_us[kept].tolist(),
                "end_us": (d_start_us[kept] + officer_us[kept]).tolist(),
                "presence_us": officer_us[kept].tolist(),
                "devices": [1] * len(kept),
            },
        )
        stored = 0
        for block in range(DAYS - span_days, DAYS, 7):  # a week at a time: bounded memory
            recent = np.flatnonzero((d_day >= block) & (d_day < block + 7))
            per_row = spans[recent]
            member = np.repeat(recent, per_row)
            step = np.arange(len(member)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
            s_start = d_start_us[member] + step * interval_s[member] * US
            stored += _insert(
                connection,
                CreditedSpan.__table__,
                {
                    "hotspot_id": ids_arr[d_spot[member]].tolist(),
                    "device_id": devices_arr[d_officer[member]].tolist(),
                    "start_us": s_start.tolist(),
                    "end_us": (s_start + interval_s[member] * US).tolist(),
                },
            )
        counts[f"credited_spans (last {span_days} days)"] = stored
    if engine.dialect.name == "postgresql":  # as autovacuum would; SQLite is left as is
        with engine.begin() as connection:
            connection.execute(text("ANALYZE"))
    engine.dispose()
    return counts, password


def reuse_database(url: str) -> tuple[dict[str, int], str, str]:
    """Add a supervisor to a database an earlier run built; return the row counts of its
    dosage tables, and the supervisor's name and password."""
    engine = make_engine(url)
    upgrade(engine)  # the schema of this code, should the database be older
    password = secrets.token_urlsafe(16)
    name = f"{USERNAME}-{secrets.token_hex(4)}"
    with session_factory(engine).begin() as session:
        create_user(session, name, "supervisor", password, actor="bench")
    counts = {}
    with engine.connect() as connection:
        for table in ("daily_dosage", "hourly_presence", "visits", "credited_spans"):
            counts[table] = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar()
    engine.dispose()
    return counts, name, password


# --------------------------------------------------------------------------- measuring


def signed_in_client(app, password: str, username: str = USERNAME):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
    if token is None:
        token = re.search(r'value="([^"]+)"[^>]*name="csrf_token"', page)
    response = client.post(
        "/login",
        data={"csrf_token": token[1], "username": username, "password": password},
    )
    if response.status_code != 302:
        raise RuntimeError(f"log-in failed: {response.status_code}")
    return client


def timed_get(client, path: str) -> tuple[float, float, bytes, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    response = client.get(path)
    body = response.get_data()
    return (time.perf_counter() - wall, time.process_time() - cpu, body, response.status_code)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(client, paths: tuple[str, ...], runs: int, repeats: int = 1) -> dict[str, dict]:
    """Warm each page up once, then time `runs` interleaved rounds of all pages, `repeats`
    times over; each repeat's times are kept apart (results[path]["repeats"])."""
    results = {p: {"wall": [], "cpu": [], "repeats": []} for p in paths}
    for path in paths:
        _, _, body, status = timed_get(client, path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        results[path]["body"] = body
    for _ in range(repeats):
        walls = {p: [] for p in paths}
        for _ in range(runs):
            for path in paths:
                wall, cpu, body, status = timed_get(client, path)
                if status != 200:
                    raise RuntimeError(f"GET {path}: {status}")
                walls[path].append(wall)
                results[path]["wall"].append(wall)
                results[path]["cpu"].append(cpu)
        for path in paths:
            results[path]["repeats"].append(walls[path])
    return results


def profile(client, paths: tuple[str, ...], runs: int, top: int) -> list[str]:
    """Return, per page, the `top` functions of most cumulative time over `runs` requests."""
    import cProfile
    import io
    import pstats

    lines = []
    for path in paths:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(runs):
            client.get(path)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
        lines += [
            f"#### cProfile of GET {path} ({runs} requests)",
            "",
            "```",
            out.getvalue(),
            "```",
        ]
    return lines


def assets_of(html: str) -> list[str]:
    """Return the local scripts and stylesheets a page loads."""
    found = re.findall(r'<script[^>]*\ssrc="([^"]+)"', html)
    found += re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', html)
    found += re.findall(r'<link[^>]*href="([^"]+)"[^>]*rel="stylesheet"', html)
    return list(dict.fromkeys(u for u in found if u.startswith("/")))


MASKS = [
    (re.compile(r'nonce="[^"]+"'), 'nonce="N"'),
    (re.compile(r'name="csrf_token"[^>]*value="[^"]+"'), 'name="csrf_token" value="T"'),
    (re.compile(r"[0-9a-f]{32}"), "ID"),
]


def masked(html: bytes) -> str:
    page = html.decode("utf-8")
    for pattern, replacement in MASKS:
        page = pattern.sub(replacement, page)
    return page


def figures(url: str, params: DosageParams) -> dict:
    """Return the tables behind the overview and hot spot pages, for exact comparison."""
    from tracker.dosage.patrols import hot_spot_visits, hour_by_weekday, officer_figures
    from tracker.foundation.clock import local_today
    from tracker.plan import compliance
    from tracker.plan.compliance import (
        compliance_table,
        cumulative_series,
        daily_compliance,
        hot_spot_overview,
    )
    from tracker.plan.storage import find_operation

    # Faster ways to the same tables, where this version of the code has them: their
    # results are stored under "<table>#fast" and compared with <table>.
    overview_table = getattr(compliance, "overview_table", None)
    hot_spot_tables = getattr(compliance, "hot_spot_tables", None)
    # The overview page's route (issue 10): the overview, and whole figures of more periods.
    overview_with_periods = getattr(compliance, "overview_with_periods", None)
    engine = make_engine(url)
    out = {}
    with session_factory(engine)() as session:
        operation = find_operation(session)
        reference = local_today(operation.tz)
        recent = max(operation.start_date, reference - timedelta(days=27))
        ids = sorted(session.scalars(text("SELECT hotspot_id FROM operation_hot_spots")))
        start = operation.start_date
        for label, day in (
            ("today", reference),
            ("mid", reference - timedelta(days=200)),
            ("start", start),
            ("start+3", start + timedelta(days=3)),
            ("before", start - timedelta(days=3)),
            ("end+1", operation.end_date + timedelta(days=1)),
            ("end+10", operation.end_date + timedelta(days=10)),
        ):
            table = compliance_table(session, operation, day)
            out[f"compliance_table/{label}"] = table
            out[f"hot_spot_overview/{label}"] = hot_spot_overview(table)
            out[f"daily_compliance/{label}"] = daily_compliance(session, operation, day)
            if overview_table is not None:
                out[f"hot_spot_overview/{label}#fast"] = overview_table(session, operation, day)
            if overview_with_periods is not None:
                shown, periods = overview_with_periods(session, operation, day)
                out[f"hot_spot_overview/{label}#periods"] = shown
                check_periods(table, periods, label)
        for hotspot in ids:
            out[f"daily_compliance/{hotspot}"] = daily_compliance(
                session, operation, reference, [hotspot]
            )
            out[f"cumulative_series/{hotspot}"] = cumulative_series(
                session, operation, hotspot, reference
            )
            if hot_spot_tables is not None:
                daily, cumulative, visits = hot_spot_tables(
                    session, operation, hotspot, params, reference
                )
                out[f"daily_compliance/{hotspot}#fast"] = daily
                out[f"cumulative_series/{hotspot}#fast"] = cumulative
                if hotspot in ("LE01", "LE13"):
                    out[f"hot_spot_visits/{hotspot}#fast"] = visits
        for hotspot in ("LE01", "LE13"):
            out[f"hot_spot_visits/{hotspot}"] = hot_spot_visits(
                session, hotspot, operation.start_date, reference, params
            )
            out[f"hour_by_weekday/{hotspot}"] = hour_by_weekday(session, hotspot, recent, reference)
            out[f"officer_figures/{hotspot}"] = officer_figures(
                session, params, recent, reference, hotspot_id=hotspot
            )
        out["officer_figures/PC4107"] = officer_figures(
            session, params, recent, reference, officer_id="PC4107"
        )
    engine.dispose()
    return out


def check_periods(table, periods, label: str) -> None:
    """Raise unless overview_with_periods's rows of compliance_table's periods (all but the
    last 7 days) are compliance_table's, cell for cell."""
    import pandas as pd

    shared = periods[periods["period"] != "last_7_days"].reset_index(drop=True)
    columns = list(shared.columns)
    expected = (
        table[table["period"].isin(set(shared["period"]))][columns]
        .sort_values(["period", "hotspot_id"], kind="stable")
        .reset_index(drop=True)
    )
    got = shared.sort_values(["period", "hotspot_id"], kind="stable").reset_index(drop=True)
    try:
        pd.testing.assert_frame_equal(got, expected, check_exact=True)
    except AssertionError as exc:
        raise RuntimeError(f"overview_with_periods/{label} differs from compliance_table") from exc


def compare_figures(saved: dict, now: dict) -> list[str]:
    import pandas as pd

    problems = []
    for key in sorted(set(saved) | set(now)):
        base = key.split("#")[0]
        if base not in saved or key not in now:
            if key in now or "#" not in key:
                problems.append(f"{key}: only in {'saved' if key in saved else 'new'}")
            continue
        a, b = saved[base], now[key]
        if isinstance(a, str):
            if a != b:
                problems.append(f"{key}: page differs")
            continue
        try:
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        except AssertionError as exc:
            problems.append(f"{key}: {str(exc).splitlines()[0]}")
    return problems


# --------------------------------------------------------------------------- reporting


def loadavg() -> str:
    return ", ".join(f"{v:.2f}" for v in os.getloadavg())


def report(name: str, results: dict, asset_sizes: dict[str, int], runs: int) -> list[str]:
    baseline = BASELINES[0]
    repeats = len(results[baseline]["repeats"])
    baseline_cpu = statistics.median(results[baseline]["cpu"])
    lines = [
        f"### {name}",
        "",
        f"{repeats} repeats of {runs} requests per page after one warm-up; median = median of "
        f"the repeats' medians; ratio = median of (page median / GET {baseline} median) over "
        "the repeats; p90 and CPU over all requests.",
        "",
        "| Page | Median ms | Repeats' medians ms | p90 ms | CPU median ms | HTML bytes | "
        "gzip bytes | Static files loaded (bytes) | Ratio to baseline | Target met |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    login_medians = [statistics.median(walls) for walls in results[baseline]["repeats"]]
    for path in (*PAGES, *BASELINES):
        r = results[path]
        medians = [statistics.median(walls) * 1000 for walls in r["repeats"]]
        median = statistics.median(medians)
        ratio = statistics.median(
            m / 1000 / login for m, login in zip(medians, login_medians, strict=True)
        )
        p90 = percentile(r["wall"], 90) * 1000
        cpu = statistics.median(r["cpu"]) * 1000
        size = len(r["body"])
        packed = len(gzip.compress(r["body"]))
        assets = assets_of(r["body"].decode("utf-8", "replace")) if path in PAGES else []
        static = sum(asset_sizes.get(a, 0) for a in assets)
        if path in PAGES:
            target = PAGE_TARGETS_MS[path]
            met = "yes" if median <= TARGET_MS and size <= TARGET_BYTES else "**no**"
            met = f"≤ 100 ms: {met}; ≤ {target:.0f} ms: " + (
                "yes" if median <= target else "**no**"
            )
        else:
            met = "(baseline)"
        lines.append(
            f"| GET {path} | {median:.1f} | {', '.join(f'{m:.1f}' for m in medians)} | "
            f"{p90:.1f} | {cpu:.1f} | {size:,} | {packed:,} | {static:,} ({len(assets)} files) | "
            f"{ratio:.1f}x (CPU {cpu / 1000 / baseline_cpu:.1f}x) | {met} |"
        )
    lines.append("")
    return lines


def run_one(name: str, url: str, today: date, params: DosageParams, args) -> tuple[list, dict]:
    from web import create_app

    started = time.perf_counter()
    username = USERNAME
    if args.reuse_db and name == "SQLite":
        counts, username, password = reuse_database(url)
    else:
        counts, password = build_database(
            url, today, params, args.officers_per_spot_day, args.span_days
        )
    built = time.perf_counter() - started
    print(f"[{name}] built in {built:.1f} s: {counts}", file=sys.stderr)
    app = create_app({"DATABASE_URL": url})
    client = signed_in_client(app, password, username)
    if args.gc_freeze:  # what a server gets from gc.freeze() once it has started
        gc.collect()
        gc.freeze()
    load_before = loadavg()
    results = measure(client, (*PAGES, *BASELINES), args.runs, args.repeats)
    load_after = loadavg()
    assets = sorted({a for p in PAGES for a in assets_of(results[p]["body"].decode())})
    asset_sizes = {a: len(client.get(a).get_data()) for a in assets}
    lines = report(name, results, asset_sizes, args.runs)
    lines += [
        f"Load average before / after the timed requests: {load_before} / {load_after}.",
        f"Database built in {built:.0f} s; rows: "
        + ", ".join(f"{k} {v:,}" for k, v in counts.items())
        + ".",
        "",
        "Static files: " + ", ".join(f"`{a}` {s:,} B" for a, s in asset_sizes.items()) + ".",
        "",
    ]
    for path in PAGES:
        walls = ", ".join(f"{w * 1000:.0f}" for w in results[path]["wall"])
        lines.append(f"- GET {path} wall ms: {walls}")
    lines.append("")
    if args.profile:
        lines += profile(client, PAGES, args.runs, args.profile)
    pages = {f"page{p}": masked(results[p]["body"]) for p in PAGES}
    return lines, {**figures(url, params), **pages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--repeats", type=int, default=3, help="times to repeat the --runs rounds (default 3)"
    )
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="print each page's top N functions"
    )
    parser.add_argument(
        "--reuse-db",
        action="store_true",
        help="time the SQLite database of --db as it is (built by an earlier run) instead of "
        "building it: a new bench user is added to it",
    )
    parser.add_argument("--officers-per-spot-day", type=int, default=OFFICERS)
    parser.add_argument(
        "--span-days",
        type=int,
        default=SPAN_DAYS,
        help="days (ending today) with stored credited spans (default 28)",
    )
    parser.add_argument("--db", help="SQLite file to create (default: a temporary folder)")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=os.environ.get(
            "TRACKER_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="also run on a private schema of this PostgreSQL database (dropped afterwards)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="call gc.freeze() after start-up (the app does not do this itself)",
    )
    parser.add_argument("--save-figures", help="pickle the tables and masked pages here")
    parser.add_argument("--compare-figures", help="check the tables and pages against this")
    args = parser.parse_args()

    params = DosageParams()
    today = datetime.now(params.zone).date()
    command = " ".join(["bench/bench_web.py", *sys.argv[1:]])
    output = [
        "Run of " + datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC") + f" (`{command}`), operation "
        f"{today - timedelta(days=DAYS - 1)} to {today}, on:",
        "",
    ]
    packages = ("numpy", "pandas", "sqlalchemy", "flask", "folium")
    output += [f"- {k}: {v}" for k, v in machine_info(*packages)] + [""]
    collected = {}
    with tempfile.TemporaryDirectory(prefix="bench_web_") as folder:
        path = Path(args.db) if args.db else Path(folder) / "bench.db"
        if args.reuse_db and not args.db:
            parser.error("--reuse-db needs --db FILE")
        for suffix in ("", "-wal", "-shm") if not args.reuse_db else ():
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        lines, collected["sqlite"] = run_one("SQLite", f"sqlite:///{path}", today, params, args)
        output += lines
    if args.postgres:
        from tracker.foundation.database import make_engine as engine_for

        schema = f"bench_web_{uuid.uuid4().hex[:10]}"
        admin = engine_for(args.postgres)
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        separator = "&" if "?" in args.postgres else "?"
        url = f"{args.postgres}{separator}options=-csearch_path%3D{schema}"
        try:
            lines, collected["postgresql"] = run_one("PostgreSQL", url, today, params, args)
            output += lines
        finally:
            with admin.begin() as connection:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    print("\n".join(output))
    if args.save_figures:
        with open(args.save_figures, "wb") as handle:
            pickle.dump(collected, handle)
    if args.compare_figures:
        with open(args.compare_figures, "rb") as handle:
            saved = pickle.load(handle)
        for name, tables in collected.items():
            if name not in saved:
                print(f"figures ({name}): nothing saved to compare with")
                continue
            problems = compare_figures(saved[name], tables)
            print(
                f"figures ({name}): {len(tables)} tables and pages compared, "
                + ("all identical" if not problems else f"{len(problems)} differ")
            )
            for problem in problems:
                print(f"  {problem}")


if __name__ == "__main__":
    main()
