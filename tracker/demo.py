"""`make demo`: the whole product on embedded defaults, with a simulated fleet.

A fresh SQLite database in the instance folder gets the demo hot spots, plan, devices,
users, two weeks of patrol history and stop-and-search records; then the embedded broker,
the ingester, a live simulated fleet and the web app run until Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from tracker.accounts.users import create_user
from tracker.dosage.devices import AssignmentRow, load_assignments
from tracker.dosage.engine import DosageParams, configured_params
from tracker.dosage.geofence import load_hot_spots
from tracker.dosage.recompute import bring_up_to_date, replace_hot_spots
from tracker.dosage.store import store_pings
from tracker.foundation import settings
from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.plan.reader import read_plan
from tracker.plan.storage import load_plan
from tracker.simulation.fleet import fleet, patrol, point_in
from tracker.stops.models import GOWISELY, StopSearch
from tracker.stops.records import import_stops, validate_stop
from tracker.stops.review import update_review

log = logging.getLogger("tracker.demo")
GEOFENCES = settings.PROJECT_ROOT / "geofences"
DEMO_HOT_SPOTS = GEOFENCES / "leicestershire_demo.geojson"
DEMO_PLAN = GEOFENCES / "demo_plan.yaml"
DEVICES = 12
HISTORY_DAYS = 14
SHIFT_HOURS = (8, 16)  # local start hours of the two daily shifts


def device_name(n: int) -> str:
    return f"radio-{n + 1:03d}"


def officer_of(n: int) -> str:
    return f"PC{4100 + n}"


def prepare(db_path: Path, params: DosageParams, seed: int = 7) -> dict[str, str]:
    """Build the demo database from scratch; return the demo users' passwords."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    engine = make_engine(f"sqlite:///{db_path}")
    upgrade(engine)
    factory = session_factory(engine)
    hot_spots = load_hot_spots(DEMO_HOT_SPOTS)
    now = datetime.now(UTC)
    with factory.begin() as session:
        replace_hot_spots(session, hot_spots, params)
        load_assignments(
            session,
            [
                AssignmentRow(
                    n + 2,
                    device_name(n),
                    officer_of(n),
                    f"Officer {officer_of(n)}",
                    now - timedelta(days=365),
                    None,
                )
                for n in range(DEVICES)
            ],
            actor="demo",
        )
        _load_plan(session)
    passwords = {}
    with factory.begin() as session:
        for username, role, officer in (
            ("admin", "admin", None),
            ("supervisor", "supervisor", None),
            ("assurance", "assurance", None),
            ("officer", "officer", officer_of(0)),
        ):
            passwords[username] = secrets.token_urlsafe(12)
            create_user(session, username, role, passwords[username], officer, actor="demo")
    log.info("simulating %d days of patrols by %d devices...", HISTORY_DAYS, DEVICES)
    zone = params.zone
    local_today = now.astimezone(zone).date()
    for days_ago in range(HISTORY_DAYS, -1, -1):
        day = local_today - timedelta(days=days_ago)
        for shift, start_hour in enumerate(SHIFT_HOURS):
            start = datetime(day.year, day.month, day.day, start_hour, tzinfo=zone)
            end = min(start + timedelta(hours=7), now - timedelta(minutes=5))
            if end <= start:
                continue
            hours = (end - start).total_seconds() / 3600
            devices = range(shift, DEVICES, 2)  # each device works one shift a day
            pings = [
                p
                for n in devices
                for p in patrol(hot_spots, device_name(n), start, hours, seed=seed + days_ago)
            ]
            with factory.begin() as session:
                store_pings(session, pings, params, source="import")
    bring_up_to_date(factory.begin, hot_spots, params)
    with factory.begin() as session:
        _load_stops(session, hot_spots, now, random.Random(seed))  # noqa: S311 (demo data)
    engine.dispose()
    return passwords


def _load_plan(session) -> None:
    load_plan(session, read_plan(DEMO_PLAN), actor="demo")


DEMO_STOPS = 80
ETHNICITIES = (
    ("White - English/Welsh/Scottish/Northern Irish/British", "White", 50),
    ("Asian/Asian British - Indian", "Asian", 18),
    ("Black/African/Caribbean/Black British - African", "Black", 10),
    ("Mixed/Multiple ethnic groups - White and Black Caribbean", "Black", 5),
    ("Other ethnic group - Not stated", None, 7),
)
OBJECTS = (
    ("Controlled drugs", "Misuse of Drugs Act 1971 (section 23)", 55),
    ("Offensive weapons", "Police and Criminal Evidence Act 1984 (section 1)", 30),
    ("Stolen goods", "Police and Criminal Evidence Act 1984 (section 1)", 15),
)
OUTCOMES = (
    ("A no further action disposal", 65),
    ("Arrest", 15),
    ("Community resolution", 10),
    ("Penalty Notice for Disorder", 5),
    ("Summons / charged by post", 5),
)


def _pick(rng: random.Random, options):
    return rng.choices(options, weights=[o[-1] for o in options])[0]


def _load_stops(session, hot_spots, now: datetime, rng: random.Random) -> None:
    """Invent stop-and-search records over six weeks, mostly in hot spots, some reviewed."""
    spots = list(hot_spots)
    records = []
    for n in range(DEMO_STOPS):
        occurred = now - timedelta(days=rng.uniform(0.2, 42), hours=rng.uniform(0, 6))
        lon, lat = (
            point_in(rng.choice(spots), rng)
            if rng.random() < 0.85
            else (-1.13 + rng.uniform(-0.05, 0.05), 52.63 + rng.uniform(-0.04, 0.04))
        )
        self_defined, officer_defined, _ = _pick(rng, ETHNICITIES)
        obj, legislation, _ = _pick(rng, OBJECTS)
        outcome = _pick(rng, OUTCOMES)[0]
        record, errors = validate_stop(
            {
                "type": rng.choice(("Person search", "Person search", "Person and Vehicle search")),
                "occurred_at": occurred.isoformat(),
                "part_of_policing_operation": True,
                "policing_operation": "Operation Guardian",
                "latitude": round(lat, 6),
                "longitude": round(lon, 6),
                "gender": rng.choice(("Male", "Male", "Female")),
                "age_range": rng.choice(("10-17", "18-24", "18-24", "25-34", "over 34")),
                "self_defined_ethnicity": self_defined,
                "officer_defined_ethnicity": officer_defined,
                "legislation": legislation,
                "object_of_search": obj,
                "outcome": outcome,
                "outcome_linked_to_object": outcome != "A no further action disposal"
                and rng.random() < 0.7,
                "removal_of_more_than_outer_clothing": False,
                "reference": f"DEMO-{n + 1:04d}",
                "officer_id": officer_of(rng.randrange(DEVICES)),
                "grounds": "Demonstration record: smell of cannabis and behaviour on approach.",
                "bwv_recorded": rng.random() < 0.92,
                "bwv_reference": f"BWV-{n + 1:05d}",
            },
            now=now,
        )
        if errors:
            raise ValueError(f"demo stop {n}: {errors}")
        records.append(record)
    import_stops(session, records, actor="demo", source="demo")
    session.flush()
    stops = session.scalars(select(StopSearch).order_by(StopSearch.occurred_at)).all()
    answers = ("yes", "yes", "yes", "partly", "no")
    for stop in stops:
        age_days = (now - stop.occurred_at).days
        if age_days < 10 or rng.random() < 0.3:
            continue  # recent ones are pending; some older ones are overdue
        if not stop.bwv_recorded:
            update_review(
                session,
                stop.id,
                "assurance",
                {"status": "no_footage", "no_footage_reason": "Camera not activated"},
            )
            continue
        checklist = {name: rng.choice(answers) for name in GOWISELY}
        update_review(
            session,
            stop.id,
            "assurance",
            {
                "status": "reviewed",
                **checklist,
                "outcome": rng.choice(
                    ("no_issues", "no_issues", "learning_identified", "referred")
                ),
                "rag": rng.choice(("green", "green", "amber", "red")),
                "findings": "Demonstration review.",
            },
        )


class LiveFleet:
    """Publishes the simulated fleet's current positions to the broker in real time."""

    def __init__(self, broker_url: str, hot_spots, devices: int):
        import paho.mqtt.client as mqtt

        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="demo-fleet", protocol=mqtt.MQTTv311
        )
        host, port = broker_url.removeprefix("mqtt://").split(":")
        self._client.connect(host, int(port))
        self._client.loop_start()
        self._hot_spots = hot_spots
        self._devices = devices
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)

    def start(self) -> LiveFleet:
        self._thread.start()
        return self

    def _run(self) -> None:
        start = datetime.now(UTC)
        pings = fleet(self._hot_spots, self._devices, start, hours=24, seed=int(time.time()))
        for ping in pings:
            delay = ping.t_us / 1e6 - time.time()
            if delay > 0 and self._stop.wait(delay):
                return
            payload = {
                "ts": round(ping.t_us / 1e6, 3),
                "lat": ping.lat,
                "lon": ping.lon,
                "acc": ping.accuracy_m,
            }
            self._client.publish(f"patrol/{ping.device_id}/location", json.dumps(payload), qos=1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()


def run(host: str = "127.0.0.1", port: int = 5000) -> None:
    """Prepare the demo database, start broker, ingester, live fleet and web app."""
    from waitress import create_server

    from tracker.cli.options import configured
    from tracker.mqtt.broker import EmbeddedBroker
    from tracker.mqtt.ingester import BrokerAddress, IngestConfig, Ingester
    from web import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    params = configured(configured_params)
    instance = Path(settings.get("TRACKER_INSTANCE_PATH"))
    instance.mkdir(parents=True, exist_ok=True)
    db_path = instance / "demo.db"
    passwords = prepare(db_path, params)
    url = f"sqlite:///{db_path}"
    hot_spots = load_hot_spots(DEMO_HOT_SPOTS)
    broker = EmbeddedBroker().start()
    ingester = Ingester(
        IngestConfig(
            broker=BrokerAddress.parse(broker.url),
            client_id="demo-ingester",
            topics=settings.get("TRACKER_MQTT_TOPICS"),
            protocol="3.1.1",
            log_every_s=60,
            db_url=url,
        )
    )
    ingest_thread = threading.Thread(target=ingester.run, name="ingester", daemon=True)
    ingest_thread.start()
    ingester.wait_connected(10)
    live = LiveFleet(broker.url, hot_spots, DEVICES).start()
    app = create_app({"DATABASE_URL": url})
    server = create_server(app, host=host, port=port, threads=8)
    print(
        f"\nDemo running: open http://{host}:{server.effective_port}/ "
        f"(MQTT broker {broker.url}, database {db_path})"
    )
    print("Demo users (passwords shown once):")
    for username, password in passwords.items():
        print(f"  {username:<11} {password}")
    print("Ctrl-C stops everything.\n", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        live.stop()
        ingester.stop()
        ingest_thread.join(timeout=10)
        broker.stop()
