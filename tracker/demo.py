"""`make demo`: the whole product on embedded defaults, with a simulated fleet.

A fresh SQLite database in the instance folder gets the demo hot spots, devices, users, a
12-month plan whose operation began two weeks ago, patrol history for every day of it so
far, and stop-and-search records; then the embedded broker, the ingester, a live simulated
fleet and the web app run until Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import threading
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
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
from tracker.harm.evaluate import add_months
from tracker.harm.synthetic import HistorySettings, store_synthetic_history
from tracker.partnership.demo_plans import DEMO_PARTNER_AGENCY, seed_demo_plans
from tracker.plan.reader import read_plan
from tracker.plan.storage import load_plan
from tracker.plan.targets import Plan
from tracker.plan.tasking import tasking
from tracker.simulation.fleet import TaskedFleet, patrol, point_in
from tracker.stops.models import CONDUCT, GOWISELY, StopSearch
from tracker.stops.records import ReviewPolicy, import_key, import_stops, validate_stop
from tracker.stops.review import update_review

log = logging.getLogger("tracker.demo")
GEOFENCES = settings.PROJECT_ROOT / "geofences"
DEMO_HOT_SPOTS = GEOFENCES / "leicestershire_demo.geojson"
DEMO_PLAN = GEOFENCES / "demo_plan.yaml"
DEVICES = 12
# The operation began this many days before today, and history is simulated for every one of
# them: starting it earlier would leave days without patrols, and every "to date" figure red.
HISTORY_DAYS = 14
# Local start hours of the two daily shifts: the late one runs to 01:00, into the night-time
# windows of the plan, which a shift ending at 23:00 would leave red.
SHIFT_HOURS = (10, 18)
SHIFT_LENGTH = timedelta(hours=7)
TASKING_EVERY_S = 180  # how often the live fleet reads the tasking list


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
    zone = params.zone
    local_today = now.astimezone(zone).date()
    first_day = local_today - timedelta(days=HISTORY_DAYS)
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
        load_plan(session, demo_plan(first_day), actor="demo")
    _load_crime_history(factory, hot_spots, local_today)
    passwords = {}
    with factory.begin() as session:
        for username, role, officer in (
            ("admin", "admin", None),
            ("supervisor", "supervisor", None),
            ("assurance", "assurance", None),
            ("officer", "officer", officer_of(0)),
            ("dispatch", "dispatch", None),
            ("partner", "partner", None),
        ):
            passwords[username] = secrets.token_urlsafe(12)
            agency = DEMO_PARTNER_AGENCY if role == "partner" else None
            create_user(
                session, username, role, passwords[username], officer, actor="demo", agency=agency
            )
        seed_demo_plans(session, [h.id for h in hot_spots], first_day, params.tz)
    log.info("simulating %d days of patrols by %d devices...", HISTORY_DAYS + 1, DEVICES)
    for days_ago in range(HISTORY_DAYS, -1, -1):
        day = local_today - timedelta(days=days_ago)
        for shift, start_hour in enumerate(SHIFT_HOURS):
            start = datetime(day.year, day.month, day.day, start_hour, tzinfo=zone)
            end = min(start + SHIFT_LENGTH, now - timedelta(minutes=5))
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
                # Loaded history, not live traffic: the ingest-health rate leaves it out.
                store_pings(session, pings, params, source="import")
    bring_up_to_date(factory.begin, hot_spots, params)
    with factory.begin() as session:
        rng = random.Random(seed)  # noqa: S311 (demo data)
        _load_stops(session, hot_spots, first_day, now, params, rng)
    engine.dispose()
    return passwords


def _load_crime_history(factory, hot_spots, local_today: date) -> None:
    """Three years of generated recorded crime, and a finished 12-month pilot operation on
    the same hot spots (its harm fell by a planted quarter), so that the harm page has an
    operation it can judge: the demo's own began two weeks ago."""
    this_month = local_today.replace(day=1)
    pilot = demo_plan(add_months(this_month, -12))  # the 12 months up to last month
    pilot = replace(pilot, name="Operation Guardian pilot (DEMONSTRATION)")
    with factory.begin() as session:
        load_plan(session, pilot, actor="demo")
        store_synthetic_history(
            session,
            hot_spots,
            add_months(this_month, -36),
            add_months(this_month, -1),
            pilot.start_date,
            pilot.end_date,
            HistorySettings(background_per_month=1_500),
        )


def demo_plan(first_day: date) -> Plan:
    """Return the demo plan moved to start on `first_day`, still 12 months long.

    Every date of the file moves by the same number of days, so the phases keep their
    lengths and order, except that the last day becomes the day before the start's
    anniversary (the file's year has no 29 February; the moved one may).
    """
    plan = read_plan(DEMO_PLAN)
    shift = first_day - plan.start_date
    end = _anniversary(first_day) - timedelta(days=1)

    def moved(day: date) -> date:
        return end if day == plan.end_date else day + shift

    phases = tuple(replace(p, starts=moved(p.starts), ends=moved(p.ends)) for p in plan.phases)
    return replace(plan, start_date=first_day, end_date=end, phases=phases)


def _anniversary(day: date) -> date:
    """The same date a year on; 1 March for 29 February."""
    try:
        return day.replace(year=day.year + 1)
    except ValueError:
        return date(day.year + 1, 3, 1)


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


def _load_stops(
    session,
    hot_spots,
    first_day: date,
    now: datetime,
    params: DosageParams,
    rng: random.Random,
) -> None:
    """Invent the operation's stop-and-search records, mostly in hot spots, during the shifts
    of its days so far, and review most of those more than a couple of days old."""
    spots = list(hot_spots)
    records = []
    for n in range(DEMO_STOPS):
        occurred = _during_a_shift(first_day, now, params.zone, rng)
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
        # Stored stops are told apart by their import key, which a file import derives from
        # the row's values and its occurrence among identical rows: each demo record has its
        # own reference, so it is the first and only row with its values.
        records.append(replace(record, import_key=import_key(record, 1)))
    import_stops(session, records, actor="demo", source="demo", policy=ReviewPolicy(tz=params.tz))
    session.flush()
    stops = session.scalars(select(StopSearch).order_by(StopSearch.occurred_at)).all()
    for stop in stops:
        age_days = (now - stop.occurred_at).days
        if age_days < 2 or rng.random() < 0.25:
            continue  # the last two days' are pending, and a quarter of the older ones
        if not stop.bwv_recorded:
            changes = {"status": "no_footage", "no_footage_reason": "Camera not activated"}
        else:
            changes = _demo_review(rng)
        update_review(session, stop.id, "assurance", changes)


# A review's outcome, RAG rating and grade go together: (outcome, rag, grade, weight).
REVIEW_VERDICTS = (
    ("no_issues", "green", "good_practice", 60),
    ("learning_identified", "amber", "learning", 30),
    ("referred", "red", "concern", 10),
)
ANSWERS = (("yes", 80), ("partly", 15), ("no", 5))
CAMERA = (("whole", 80), ("joined_late", 12), ("stopped_early", 8))


def _demo_review(rng: random.Random) -> dict[str, str]:
    """Return a completed review of footage: checklist answers, assessment and verdict."""
    outcome, rag, grade, _ = _pick(rng, REVIEW_VERDICTS)
    changes = {
        "status": "reviewed",
        **{name: _pick(rng, ANSWERS)[0] for name in GOWISELY},
        **{f"conduct_{name}": _pick(rng, ANSWERS)[0] for name in CONDUCT},
        "grounds_reasonable": _pick(rng, ANSWERS)[0],
        "camera": _pick(rng, CAMERA)[0],
        "outcome": outcome,
        "rag": rag,
        "grade": grade,
        "findings": "Demonstration review.",
    }
    if changes["grounds_reasonable"] != "yes":
        changes["grounds_note"] = "The recorded grounds do not say what was seen or smelt."
    if changes["camera"] != "whole":
        changes["camera_note"] = "The camera was not recording for the whole encounter."
    return changes


def _during_a_shift(first_day: date, now: datetime, zone, rng: random.Random) -> datetime:
    """Return a random instant of a patrol shift on a day from `first_day`, before `now`."""
    days = (now.astimezone(zone).date() - first_day).days + 1
    while True:
        day = first_day + timedelta(days=rng.randrange(days))
        start = datetime(day.year, day.month, day.day, rng.choice(SHIFT_HOURS), tzinfo=zone)
        occurred = start + SHIFT_LENGTH * rng.random()
        if occurred < now - timedelta(minutes=30):
            return occurred


def most_needed(sessions, params: DosageParams) -> list[str]:
    """Return the hot spot ids of the tasking list now, most needed first, leaving out those
    whose maximum is reached (the list says to send no one there)."""
    with sessions() as session:
        items = tasking(session, params).items
    return [item.need.hotspot_id for item in items if not item.need.over_max]


class LiveFleet:
    """Publishes the simulated fleet's positions to the broker in real time; every few
    minutes it reads the tasking list and sends an idle officer to the top of it."""

    def __init__(self, broker_url: str, hot_spots, devices: int, db_url: str, params):
        import paho.mqtt.client as mqtt

        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="demo-fleet", protocol=mqtt.MQTTv311
        )
        host, port = broker_url.removeprefix("mqtt://").split(":")
        self._client.connect(host, int(port))
        self._client.loop_start()
        self._engine = make_engine(db_url)
        self._sessions = session_factory(self._engine)
        self._params = params
        self._fleet = TaskedFleet(
            hot_spots,
            devices,
            datetime.now(UTC),
            self._most_needed,
            every_s=TASKING_EVERY_S,
            seed=int(time.time()),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-fleet", daemon=True)

    def start(self) -> LiveFleet:
        self._thread.start()
        return self

    def _most_needed(self, _moment: datetime) -> list[str]:
        try:
            return most_needed(self._sessions, self._params)
        except Exception:  # the fleet keeps patrolling; the log says why
            log.exception("could not read the tasking list; no one sent this time")
            return []

    def _run(self) -> None:
        for ping in self._fleet.pings():
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
        self._engine.dispose()


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
    live = LiveFleet(broker.url, hot_spots, DEVICES, url, params).start()
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
