"""Ingest health counts live pings (stored by the MQTT ingester) as the ingest rate, and
imported ones (files, loaded history) apart, however recent their fixes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tracker.dosage.engine import DosageParams
from tracker.dosage.ingest_health import device_health, ingest_rates
from tracker.dosage.pings import Ping
from tracker.dosage.store import store_pings
from tracker.foundation.clock import instant_us

PARAMS = DosageParams()


def pings(device_id: str, first: datetime, count: int) -> list[Ping]:
    t0 = instant_us(first)
    return [Ping(device_id, t0 + n * 30_000_000, 52.6, -1.1, 5.0, None) for n in range(count)]


def test_imported_pings_are_counted_apart_from_the_live_rate(db):
    now = datetime.now(UTC)
    recent = now - timedelta(minutes=30)
    with db.begin() as session:
        # radio-1 sent 4 pings live; radio-2's 40 of the same half hour came from a file,
        # and radio-1's history of last week too.
        store_pings(session, pings("radio-1", recent, 4), PARAMS)
        store_pings(session, pings("radio-2", recent, 40), PARAMS, source="import")
        store_pings(session, pings("radio-1", now - timedelta(days=7), 60), PARAMS, "import")
    with db() as session:
        devices = device_health(session).set_index("device_id")
        rates = ingest_rates(session)

    assert devices["pings_last_hour"].to_dict() == {"radio-1": 4, "radio-2": 0}
    assert devices.loc["radio-2", "last_seen"] > recent  # imported pings still say when seen
    assert list(rates.columns) == ["hour", "pings", "dead_letters", "imported_pings"]
    assert (rates["pings"].sum(), rates["imported_pings"].sum()) == (4, 100)
