"""Storing ingest batches and keeping dosage current, on SQLite and PostgreSQL.

The incremental dosage (tracker.dosage.recompute) must always equal what the offline engine
(tracker.dosage.compute_dosage) makes of the same pings, whatever order and grouping the
pings arrive in (docs/ingest.md and docs/dosage.md).
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select

from tests.builders import feature_collection, square_feature
from tracker.dosage import recompute
from tracker.dosage.engine import DAILY_COLUMNS, ENDPOINTS, DosageParams, compute_dosage
from tracker.dosage.geofence import HotSpot, HotSpotSet, load_hot_spots, parse_hot_spots
from tracker.dosage.ingest import BatchOutcome, Message, store_messages
from tracker.dosage.payloads import Limits
from tracker.dosage.pings import Ping, format_timestamp, make_ping, pings_frame
from tracker.dosage.recompute import (
    bring_up_to_date,
    enqueue_all_device_days,
    rebuild_device_days,
    replace_hot_spots,
)
from tracker.dosage.reports import daily_report
from tracker.dosage.store import (
    MAX_DEAD_LETTER_PAYLOAD,
    purge_pings,
    store_dead_letters,
    store_pings,
    stored_hot_spots,
)
from tracker.foundation.models import (
    CreditedSpan,
    DailyDosage,
    DeadLetter,
    Device,
    DeviceDailyDosage,
    DirtyDeviceDay,
    DirtyHotSpotDay,
    PingRow,
    Visit,
)
from tracker.foundation.tables import records
from tracker.simulation.fleet import fleet

ROOT = Path(__file__).resolve().parents[2]
DEMO = load_hot_spots(ROOT / "geofences" / "leicestershire_demo.geojson")
PARAMS = DosageParams()
LONDON = ZoneInfo("Europe/London")
LIMITS = Limits()

IN_LE01 = (52.6371, -1.1333)  # Clock Tower and Haymarket
IN_LE02 = (52.634475, -1.13109)  # Gallowtree Gate
IN_LE05 = (52.638525, -1.13109)  # Belgrave Gate
OUTSIDE = (52.6400, -1.1333)  # north of the centre, in no demo hot spot


def now_us() -> int:
    return time.time_ns() // 1000


def utc_text(t_us: int) -> str:
    return format_timestamp(t_us).replace("+00:00", "Z")


def native(device: str, body) -> Message:
    return Message(f"patrol/{device}/location", json.dumps(body).encode())


def load_demo(db, params: DosageParams = PARAMS) -> None:
    with db.begin() as session:
        replace_hot_spots(session, DEMO, params)


def store(db, pings: list[Ping], params: DosageParams = PARAMS) -> None:
    with db.begin() as session:
        store_pings(session, pings, params)


def catch_up(db, params: DosageParams = PARAMS) -> int:
    with db() as session:
        hot_spots = stored_hot_spots(session)
    return bring_up_to_date(db.begin, hot_spots, params)


def ping_rows(db) -> list[tuple]:
    with db() as session:
        return [
            tuple(r)
            for r in session.execute(
                select(
                    PingRow.device_id,
                    PingRow.t_us,
                    PingRow.lat,
                    PingRow.lon,
                    PingRow.accuracy_m,
                    PingRow.speed_kmh,
                ).order_by(PingRow.device_id, PingRow.t_us)
            )
        ]


def stored_dosage(db) -> dict[str, list]:
    """Every stored figure, in the shapes `expected_dosage` gives for the offline engine."""
    with db() as session:
        daily = records(daily_report(session))
        exact = sorted(
            tuple(r)
            for r in session.execute(
                select(
                    DailyDosage.hotspot_id,
                    DailyDosage.day,
                    DailyDosage.presence_us,
                    DailyDosage.officer_us,
                    DailyDosage.visits,
                )
            )
        )
        device_daily = sorted(
            tuple(r)
            for r in session.execute(
                select(
                    DeviceDailyDosage.hotspot_id,
                    DeviceDailyDosage.device_id,
                    DeviceDailyDosage.day,
                    DeviceDailyDosage.officer_us,
                    DeviceDailyDosage.visits,
                )
            )
        )
        visits = sorted(
            tuple(r)
            for r in session.execute(
                select(
                    Visit.hotspot_id,
                    Visit.device_id,
                    Visit.day,
                    Visit.start_us,
                    Visit.end_us,
                    Visit.presence_us,
                    Visit.devices,
                )
            )
        )
    return {"daily": daily, "exact": exact, "device_daily": device_daily, "visits": visits}


def expected_dosage(
    pings: list[Ping], hot_spots: HotSpotSet, params: DosageParams = PARAMS
) -> dict[str, list]:
    result = compute_dosage(pings_frame(pings), hot_spots, params)
    daily = result.daily
    device_daily = result.device_daily
    visits = [
        (v.hotspot_id, "", v.date, v.start_us, v.end_us, v.presence_us, v.devices)
        for v in result.visits.itertuples()
    ]
    visits += [
        (v.hotspot_id, v.device_id, v.date, v.start_us, v.end_us, v.presence_us, 1)
        for v in result.device_visits.itertuples()
    ]
    return {
        "daily": records(daily[DAILY_COLUMNS]),
        "exact": sorted(
            (r.hotspot_id, r.date, r.presence_us, r.officer_us, r.visits)
            for r in daily.itertuples()
        ),
        "device_daily": sorted(
            (r.hotspot_id, r.device_id, r.date, r.officer_us, r.visits)
            for r in device_daily.itertuples()
        ),
        "visits": sorted(visits),
    }


def queue_sizes(db) -> tuple[int, int]:
    with db() as session:
        return (
            session.scalar(select(func.count()).select_from(DirtyDeviceDay)),
            session.scalar(select(func.count()).select_from(DirtyHotSpotDay)),
        )


# --- store_messages ----------------------------------------------------------------------------


def test_mixed_batch_stores_good_pings_and_dead_letters_together(db):
    t0 = now_us() - 3_600_000_000
    t0 -= t0 % 1_000_000
    t0_s = t0 // 1_000_000
    oversized = json.dumps(
        [{"ts": t0_s, "lat": 52.6, "lon": -1.1, "n": n} for n in range(200)]
    ).encode()
    limits = Limits(max_payload_bytes=4096, max_future_s=300)
    messages = [
        native(
            "radio-1", {"ts": utc_text(t0), "lat": 52.6371, "lon": -1.1333, "acc": 5, "speed": 4.5}
        ),
        native(
            "radio-1",
            [
                {"ts": t0_s + 30, "lat": 52.6372, "lon": -1.1332},
                {"ts": t0_s + 60, "lat": 91, "lon": -1.1332},
                {"ts": t0_s + 90, "lat": 52.6373, "lon": -1.1331},
            ],
        ),
        Message(
            "owntracks/alice/phone",
            json.dumps(
                {
                    "_type": "location",
                    "lat": 52.6344,
                    "lon": -1.1311,
                    "tst": t0_s,
                    "acc": 12,
                    "vel": 3,
                    "tid": "al",
                }
            ).encode(),
        ),
        Message("owntracks/alice/phone", b'{"_type":"lwt","tst":1795680000}'),
        Message("patrol/radio-2/location", b"lat=52.6,lon=-1.1"),
        Message("patrol/radio-2/location", b'{"ts": "caf\xe9"}'),
        native("radio-2", {"lat": 52.6, "lon": -1.1}),
        native("radio-2", {"ts": t0_s, "lat": 0, "lon": 0}),
        native("radio-2", {"ts": t0_s + 86_400, "lat": 52.6, "lon": -1.1}),
        Message("patrol/radio-2/location", oversized),
        Message("patrol/radio-2/status", b'{"battery": 80}'),
        native("radio-2", []),
        Message("patrol/radio-2/location", b'{"ts": \x00}'),
    ]

    with db.begin() as session:
        outcome = store_messages(session, messages, PARAMS, limits, now_us())

    assert outcome == BatchOutcome(messages=13, pings=4, dead_letters=10, ignored=1)
    assert ping_rows(db) == [
        ("alice/phone", t0, 52.6344, -1.1311, 12.0, 3.0),
        ("radio-1", t0, 52.6371, -1.1333, 5.0, 4.5),
        ("radio-1", t0 + 30_000_000, 52.6372, -1.1332, None, None),
        ("radio-1", t0 + 90_000_000, 52.6373, -1.1331, None, None),
    ]
    with db() as session:
        letters = session.execute(
            select(
                DeadLetter.source, DeadLetter.topic, DeadLetter.reason, DeadLetter.payload
            ).order_by(DeadLetter.id)
        ).all()
        devices = session.execute(
            select(Device.id, Device.first_seen, Device.last_seen).order_by(Device.id)
        ).all()
    assert {source for source, *_ in letters} == {"mqtt"}
    reasons = [(topic, reason) for _, topic, reason, _ in letters]
    assert reasons == [
        ("patrol/radio-1/location", "element 2: lat 91.0 is out of range [-90, 90]"),
        (
            "patrol/radio-2/location",
            "payload is not valid JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        ("patrol/radio-2/location", "payload is not UTF-8 text (invalid byte 0xe9 at offset 11)"),
        ("patrol/radio-2/location", "missing timestamp"),
        ("patrol/radio-2/location", "position (0, 0) is a GPS fix failure, not a location"),
        (
            "patrol/radio-2/location",
            f"timestamp {format_timestamp((t0_s + 86_400) * 1_000_000)} is in the future "
            "(more than 300 s ahead of the server clock)",
        ),
        (
            "patrol/radio-2/location",
            f"payload of {len(oversized)} bytes exceeds the 4096 byte limit",
        ),
        (
            "patrol/radio-2/status",
            "topic 'patrol/radio-2/status' is neither "
            "patrol/<device_id>/location nor owntracks/<user>/<device>",
        ),
        ("patrol/radio-2/location", "payload is an empty array"),
        (
            "patrol/radio-2/location",
            "payload is not valid JSON (Expecting value: line 1 column 8 (char 7))",
        ),
    ]
    payloads = [payload for *_, payload in letters]
    # The whole payload is kept with each reason of a backlog, so it can be replayed.
    assert json.loads(payloads[0])[1]["lat"] == 91
    assert payloads[1] == "lat=52.6,lon=-1.1"
    assert payloads[2] == '{"ts": "caf\ufffd"}'  # undecodable bytes replaced, not lost
    text = oversized.decode()
    assert payloads[6] == (text[:MAX_DEAD_LETTER_PAYLOAD] + f"... [{len(text)} characters in all]")
    assert payloads[9] == '{"ts": \\0}'  # PostgreSQL text cannot hold NUL
    assert [d.id for d in devices] == ["alice/phone", "radio-1"]
    assert devices[1].first_seen == datetime.fromtimestamp(t0_s, UTC)
    assert devices[1].last_seen == datetime.fromtimestamp(t0_s + 90, UTC)


def test_a_message_of_many_bad_elements_is_at_most_ten_dead_letters(db):
    # 2 KB of [1,1,...] used to make 1,000 dead letters, each holding the payload.
    flood = Message("patrol/r/location", json.dumps([1] * 1000).encode())
    few = Message("patrol/r/location", json.dumps([1] * 10).encode())
    with db.begin() as session:
        outcome = store_messages(session, [flood, few], PARAMS, LIMITS, now_us())
    assert outcome.dead_letters == 20
    with db() as session:
        reasons = session.scalars(select(DeadLetter.reason).order_by(DeadLetter.id)).all()
    assert reasons[:9] == [
        f"element {n}: expected a JSON object with ts, lat, lon" for n in range(1, 10)
    ]
    assert reasons[9] == "and 991 more bad elements in this message"
    assert reasons[10:] == [
        f"element {n}: expected a JSON object with ts, lat, lon" for n in range(1, 11)
    ]


def test_a_batch_of_only_bad_messages_stores_only_dead_letters(db):
    messages = [Message("patrol/r/location", b"{"), Message("owntracks/a/b", b"[]")]

    with db.begin() as session:
        outcome = store_messages(session, messages, PARAMS, LIMITS, now_us())

    assert outcome == BatchOutcome(messages=2, pings=0, dead_letters=2)
    assert ping_rows(db) == []
    assert queue_sizes(db) == (0, 0)


def test_duplicates_within_and_across_batches_are_harmless(db):
    t0 = now_us() - 600_000_000
    t0 -= t0 % 1_000_000
    t0_s = t0 // 1_000_000
    moment = datetime.fromtimestamp(t0_s, UTC)
    same_instant = [
        moment.isoformat().replace("+00:00", "Z"),
        moment.isoformat(),
        moment.astimezone(ZoneInfo("Europe/London")).isoformat(),
        moment.astimezone(ZoneInfo("America/New_York")).isoformat(),
        t0_s,
        float(t0_s),
        str(t0_s),
    ]
    first = [native("radio-1", {"ts": ts, "lat": 52.6371, "lon": -1.1333}) for ts in same_instant]
    first.append(native("radio-1", [{"ts": t0_s + 20, "lat": 52.6371, "lon": -1.1333}] * 3))
    redelivered = [*first, native("radio-1", {"ts": t0_s + 40, "lat": 52.6371, "lon": -1.1333})]

    with db.begin() as session:
        outcomes = [store_messages(session, first, PARAMS, LIMITS, now_us())]
    with db.begin() as session:
        outcomes.append(store_messages(session, redelivered, PARAMS, LIMITS, now_us()))

    # Every duplicate is decoded (and counted) but stored once, with no dead letter.
    assert [o.pings for o in outcomes] == [10, 11]
    assert [o.dead_letters for o in outcomes] == [0, 0]
    assert [t for _, t, *_ in ping_rows(db)] == [t0, t0 + 20_000_000, t0 + 40_000_000]
    with db() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetter)) == 0


def test_duplicate_pings_do_not_change_dosage(db):
    load_demo(db)
    base = datetime(2026, 3, 10, 10, 0, tzinfo=UTC).timestamp()
    track = [make_ping("radio-1", base + 30 * n, *IN_LE01) for n in range(11)]
    store(db, track)
    catch_up(db)
    before = stored_dosage(db)

    store(db, track[3:8] + track[3:8])
    catch_up(db)

    assert before["daily"] == [
        {
            "hotspot_id": "LE01",
            "date": "2026-03-10",
            "presence_minutes": 5.0,
            "officer_minutes": 5.0,
            "visits": 1,
        }
    ]
    assert stored_dosage(db) == before


# --- incremental dosage equals a full recompute ------------------------------------------------


def simulated_shift() -> list[Ping]:
    # A night shift across local midnight and the end of British Summer Time (25 Oct 2026).
    start = datetime(2026, 10, 24, 22, 30, tzinfo=LONDON)
    return fleet(DEMO, devices=4, start=start, hours=4, seed=11)


def test_incremental_dosage_of_shuffled_chunks_equals_the_offline_engine(db):
    pings = simulated_shift()
    days = {datetime.fromtimestamp(p.t_us / 1e6, LONDON).date() for p in pings}
    assert days == {date(2026, 10, 24), date(2026, 10, 25)}
    rng = random.Random(5)
    arrival = pings[:]
    rng.shuffle(arrival)
    # Redelivery: a few chunks arrive twice.
    chunks = [arrival[i : i + 150] for i in range(0, len(arrival), 150)]
    chunks += rng.sample(chunks, 3)
    load_demo(db)

    for number, chunk in enumerate(chunks):
        store(db, chunk)
        if number in (1, 6, 11):
            catch_up(db)  # later chunks then change days already computed
    catch_up(db)

    expected = expected_dosage(pings, DEMO)
    assert len(expected["daily"]) >= 10
    assert {row["date"] for row in expected["daily"]} == {"2026-10-24", "2026-10-25"}
    assert stored_dosage(db) == expected
    assert queue_sizes(db) == (0, 0)

    # A fresh full recompute from the stored pings alone gives the same figures.
    with db.begin() as session:
        for model in (CreditedSpan, DailyDosage, DeviceDailyDosage, Visit):
            session.execute(delete(model))
        queued = enqueue_all_device_days(session, PARAMS)
    assert queued >= 2 * 4
    catch_up(db)
    assert stored_dosage(db) == expected


def test_incremental_dosage_follows_each_chunk(db):
    """After every chunk (not only at the end) the stored figures match the pings so far."""
    pings = simulated_shift()[::3]
    rng = random.Random(8)
    rng.shuffle(pings)
    load_demo(db)
    seen: list[Ping] = []

    for start in range(0, len(pings), 300):
        chunk = pings[start : start + 300]
        store(db, chunk)
        seen += chunk
        catch_up(db)
        assert stored_dosage(db) == expected_dosage(seen, DEMO), f"after {len(seen)} pings"


# --- late pings ----------------------------------------------------------------------------------


def at(hhmmss: str, day: str = "2026-06-10") -> datetime:
    return datetime.fromisoformat(f"{day}T{hhmmss}").replace(tzinfo=LONDON)


def minute_track(device: str, first: datetime, minutes: range, where) -> list[Ping]:
    return [make_ping(device, first.timestamp() + 60 * m, *where) for m in minutes]


def daily_figures(db) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(hot spot, date) -> (presence minutes, officer minutes, visits) as stored."""
    return {
        (r["hotspot_id"], r["date"]): (r["presence_minutes"], r["officer_minutes"], r["visits"])
        for r in stored_dosage(db)["daily"]
    }


@pytest.mark.parametrize(
    "late, changed",
    [
        # Radio 1 left a 4-minute gap (10:04-10:08) in LE01: two visits of 4 minutes. A late
        # ping at 10:06 inside LE01 fills the gap: one visit of 12 minutes.
        (
            make_ping("radio-1", at("10:06:00").timestamp(), *IN_LE01),
            {("LE01", "2026-06-10"): (12.0, 12.0, 1)},
        ),
        # A late ping at 10:02:30 outside any hot spot leaves 10:02-10:03 uncredited: a minute
        # less, but the break is within visit_merge_gap_s, so still two visits.
        (
            make_ping("radio-1", at("10:02:30").timestamp(), *OUTSIDE),
            {("LE01", "2026-06-10"): (7.0, 7.0, 2)},
        ),
        # Radio 3's gap 23:58:30-00:02 in LE05 is longer than max_gap_s. A late ping at 00:00:30
        # fills it: the span is split at midnight, and the 00:02 visit joins the one that began
        # on the 10th, to which it now belongs.
        (
            make_ping("radio-3", at("00:00:30", "2026-06-11").timestamp(), *IN_LE05),
            {("LE05", "2026-06-10"): (9.5, 9.5, 1), ("LE05", "2026-06-11"): (5.0, 5.0, 0)},
        ),
    ],
)
def test_a_late_ping_changes_only_the_right_figures(db, late, changed):
    """Worked by hand for the endpoint rule (whole spans between pings in a hot spot)."""
    params = replace(PARAMS, crossing_rule=ENDPOINTS)
    pings = [
        *minute_track("radio-1", at("10:00"), range(5), IN_LE01),  # 10:00-10:04
        *minute_track("radio-1", at("10:08"), range(5), IN_LE01),  # 10:08-10:12
        *minute_track("radio-2", at("10:00"), range(15), IN_LE02),  # another hot spot
        *minute_track("radio-2", at("10:00", "2026-06-09"), range(10), IN_LE01),  # day before
        *minute_track("radio-3", at("23:50:30"), range(9), IN_LE05),  # to 23:58:30
        *minute_track("radio-3", at("00:02:00", "2026-06-11"), range(4), IN_LE05),  # to 00:05
    ]
    load_demo(db, params)
    store(db, pings, params)
    catch_up(db, params)
    before = daily_figures(db)
    assert before == {
        ("LE01", "2026-06-09"): (9.0, 9.0, 1),
        ("LE01", "2026-06-10"): (8.0, 8.0, 2),
        ("LE02", "2026-06-10"): (14.0, 14.0, 1),
        ("LE05", "2026-06-10"): (8.0, 8.0, 1),
        ("LE05", "2026-06-11"): (3.0, 3.0, 1),
    }

    store(db, [late], params)
    catch_up(db, params)

    assert daily_figures(db) == {**before, **changed}
    assert stored_dosage(db) == expected_dosage([*pings, late], DEMO, params)


def test_a_late_ping_requeues_only_its_device_days(db):
    load_demo(db)
    store(db, minute_track("radio-1", at("10:00"), range(10), IN_LE01))
    store(db, minute_track("radio-2", at("10:00"), range(10), IN_LE02))
    catch_up(db)

    store(db, [make_ping("radio-1", at("10:04:30").timestamp(), *IN_LE01)])

    with db() as session:
        queued = session.execute(select(DirtyDeviceDay.device_id, DirtyDeviceDay.day)).all()
    assert [tuple(q) for q in queued] == [("radio-1", date(2026, 6, 10))]


# --- replacing the hot spot set ------------------------------------------------------------------


def square_hot_spot(hot_spot_id: str, lat: float, lon: float, size_m: float) -> HotSpot:
    return next(
        iter(parse_hot_spots(feature_collection(square_feature(hot_spot_id, lat, lon, size_m))))
    )


def test_replacing_the_hot_spots_recomputes_every_figure(db):
    pings = simulated_shift()[::2]
    load_demo(db)
    store(db, pings)
    catch_up(db)
    assert stored_dosage(db) == expected_dosage(pings, DEMO)

    # Drop half of the demo hot spots and add a large square over the city centre.
    kept = [h for h in DEMO if h.id not in {"LE02", "LE03", "LE04"}][:12]
    replacement = HotSpotSet([*kept, square_hot_spot("CENTRE", 52.6360, -1.1320, 800)])
    with db.begin() as session:
        queued = replace_hot_spots(session, replacement, PARAMS)
    assert queued > 0
    catch_up(db)

    stored = stored_dosage(db)
    assert stored == expected_dosage(pings, replacement)
    hot_spot_ids = {row["hotspot_id"] for row in stored["daily"]}
    assert "CENTRE" in hot_spot_ids
    assert hot_spot_ids <= {h.id for h in replacement}
    assert stored != expected_dosage(pings, DEMO)


# --- several workers ------------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_bring_up_to_date_waits_for_entries_another_worker_holds(db, monkeypatch):
    """On PostgreSQL claims skip locked entries: a catch-up (the `report` command) must not
    return while an ingester is still rebuilding the days it claimed."""
    pings = minute_track("radio-1", at("10:00"), range(11), IN_LE01)
    load_demo(db)
    store(db, pings)
    claimed, release, waiting = threading.Event(), threading.Event(), threading.Event()
    order: list[str] = []

    def other_worker() -> None:
        with db.begin() as session:
            assert rebuild_device_days(session, DEMO, PARAMS) == 1
            claimed.set()
            release.wait(30)
        order.append("other worker committed")

    def catch_up_and_note() -> None:
        catch_up(db)
        order.append("caught up")

    def note_waiting(seconds: float) -> None:
        waiting.set()
        time.sleep(seconds)

    monkeypatch.setattr(
        recompute, "time", SimpleNamespace(monotonic=time.monotonic, sleep=note_waiting)
    )
    worker = threading.Thread(target=other_worker)
    worker.start()
    try:
        assert claimed.wait(30)
        catching_up = threading.Thread(target=catch_up_and_note)
        catching_up.start()
        seen_waiting = waiting.wait(30)
    finally:
        release.set()
        worker.join(30)
    catching_up.join(60)

    assert seen_waiting, f"bring_up_to_date did not wait for the held entries: {order}"
    assert order == ["other worker committed", "caught up"]
    assert daily_figures(db) == {("LE01", "2026-06-10"): (10.0, 10.0, 1)}
    assert queue_sizes(db) == (0, 0)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_conflicting_duplicates_are_kept_as_the_engine_keeps_them(db, order):
    # Three pings of one device at the same instant: an inaccurate one (unusable), and two
    # usable ones at different positions. The engine keeps the usable one with the lowest
    # (lat, lon), so the stored row must be that one whatever order they arrive in.
    t = "2026-07-01T12:00:00Z"
    candidates = [
        make_ping("dup-1", t, 52.1, -1.1, accuracy_m=500.0),
        make_ping("dup-1", t, 52.3, -1.1, accuracy_m=5.0),
        make_ping("dup-1", t, 52.2, -1.2, accuracy_m=5.0),
    ]
    arrival = candidates[order:] + candidates[:order]
    for ping in arrival:  # one transaction each: duplicates across batches
        with db.begin() as session:
            store_pings(session, [ping], DosageParams())
    with db() as session:
        rows = session.execute(
            select(PingRow.lat, PingRow.lon, PingRow.accuracy_m).where(PingRow.device_id == "dup-1")
        ).all()
    assert rows == [(52.2, -1.2, 5.0)]


def test_figures_of_purged_days_survive_late_pings_and_recomputes(db):
    # 10 minutes in LE01 on 10 June (23:40-23:50), then the raw pings of that day are purged
    # (retention 2 days, "now" 13 June). A ping at 00:01 on 11 June is within max_gap_s of
    # the 10th, so its device-day is queued again; with no pings left, the 10th keeps its
    # spans and figures, and a full recompute does not erase them either.
    load_demo(db)
    store(db, minute_track("radio-p", at("23:40:00"), range(11), IN_LE01))
    catch_up(db)
    assert daily_figures(db)[("LE01", "2026-06-10")] == (10.0, 10.0, 1)
    with db.begin() as session:
        purged = purge_pings(session, 2, PARAMS, now=at("12:00:00", "2026-06-13"))
    assert purged == 11
    store(db, minute_track("radio-p", at("00:01:00", "2026-06-11"), range(1), OUTSIDE))
    catch_up(db)
    assert daily_figures(db)[("LE01", "2026-06-10")] == (10.0, 10.0, 1)
    with db.begin() as session:
        enqueue_all_device_days(session, PARAMS)
    catch_up(db)
    assert daily_figures(db)[("LE01", "2026-06-10")] == (10.0, 10.0, 1)


def test_purge_removes_dead_letters_received_before_the_retention_period(db):
    # Dead letters hold positions too: they go with the pings of the purged days.
    with db.begin() as session:
        store_dead_letters(session, "mqtt", [("patrol/r1/location", "bad", b"{}")] * 3)
    with db.begin() as session:
        letters = session.scalars(select(DeadLetter).order_by(DeadLetter.id)).all()
        letters[0].received_at = at("23:59:59", "2026-06-10")  # before 11 June: purged
        letters[1].received_at = at("00:00:00", "2026-06-11")  # the first kept instant
    with db.begin() as session:
        purge_pings(session, 1, PARAMS, now=at("08:00:00", "2026-06-12"))
    with db() as session:
        kept = session.scalars(select(DeadLetter.id).order_by(DeadLetter.id)).all()
    assert kept == [letters[1].id, letters[2].id]


def test_purge_removes_whole_local_days_only(db):
    # Retention 1 day at 08:00 on 12 June (BST): everything before local midnight starting
    # 11 June goes; 11 June keeps all of its pings, including those before 08:00.
    store(
        db,
        minute_track("radio-q", at("22:00:00", "2026-06-10"), range(3), OUTSIDE)
        + minute_track("radio-q", at("01:00:00", "2026-06-11"), range(2), OUTSIDE),
    )
    with db.begin() as session:
        assert purge_pings(session, 1, PARAMS, now=at("08:00:00", "2026-06-12")) == 3
    assert len(ping_rows(db)) == 2
