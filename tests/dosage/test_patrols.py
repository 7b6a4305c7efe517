"""Ingest health and officers' figures from stored data, on SQLite and PostgreSQL."""

from datetime import UTC, date, datetime, timedelta

from tracker.dosage.devices import AssignmentRow, load_assignments
from tracker.dosage.engine import DosageParams
from tracker.dosage.ingest_health import device_health, ingest_rates
from tracker.dosage.patrols import officer_figures
from tracker.foundation.models import CreditedSpan, DeadLetter, PingRow

NOW = datetime(2026, 7, 1, 12, 30, tzinfo=UTC)
US = 1_000_000


def test_ingest_rates_count_arrivals_per_utc_hour(db):
    with db.begin() as session:
        for minutes_ago, count in ((10, 3), (70, 2), (60 * 30, 5)):  # the last is too old
            received = NOW - timedelta(minutes=minutes_ago)
            session.add_all(
                PingRow(
                    device_id="r1",
                    t_us=int(received.timestamp() * US) + i,
                    lat=52.6,
                    lon=-1.1,
                    received_at=received,
                )
                for i in range(count)
            )
        session.add(
            DeadLetter(
                received_at=NOW - timedelta(minutes=5),
                source="mqtt",
                topic="patrol/x/location",
                reason="bad",
                payload="{}",
            )
        )
    with db() as session:
        rates = ingest_rates(session, now=NOW)
    by_hour = {row.hour.strftime("%H"): (row.pings, row.dead_letters) for row in rates.itertuples()}
    assert by_hour["12"] == (3, 1)  # 12:20
    assert by_hour["11"] == (2, 0)  # 11:20
    assert sum(p for p, _ in by_hour.values()) == 5
    assert len(rates) == 25


def test_officer_figures_follow_the_assignment_at_each_span_start(db):
    # radio-1 is PC1's until 14:00 UTC, then PC2's. Two 10-minute stretches in hot spot A,
    # one each side of the handover: each officer gets 10 minutes and (>= 2 min) one visit.
    handover = datetime(2026, 7, 1, 14, 0, tzinfo=UTC)
    with db.begin() as session:
        load_assignments(
            session,
            [
                AssignmentRow(2, "radio-1", "PC1", "One", handover - timedelta(days=1), handover),
                AssignmentRow(3, "radio-1", "PC2", "Two", handover, None),
            ],
            actor="test",
        )
        for start in (handover - timedelta(minutes=30), handover + timedelta(minutes=30)):
            t0 = int(start.timestamp() * US)
            session.add_all(
                CreditedSpan(
                    hotspot_id="A",
                    device_id="radio-1",
                    start_us=t0 + i * 60 * US,
                    end_us=t0 + (i + 1) * 60 * US,
                )
                for i in range(10)
            )
    with db() as session:
        figures = officer_figures(session, DosageParams(), date(2026, 7, 1), date(2026, 7, 1))
        health = device_health(session, now=handover)
    assert figures[
        ["officer_id", "officer_name", "hotspot_id", "officer_minutes", "visits"]
    ].to_dict(orient="records") == [
        {
            "officer_id": "PC1",
            "officer_name": "One",
            "hotspot_id": "A",
            "officer_minutes": 10.0,
            "visits": 1,
        },
        {
            "officer_id": "PC2",
            "officer_name": "Two",
            "hotspot_id": "A",
            "officer_minutes": 10.0,
            "visits": 1,
        },
    ]
    assert health.set_index("device_id").loc["radio-1", "officer_id"] == "PC2"
