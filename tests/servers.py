"""Fixtures for the real servers the integration tests use: databases, MQTT brokers, Chromium.

Where a server is unreachable the test skips, except when TRACKER_TEST_REQUIRE_SERVICES=1
(set by .ci/run): then it fails, so CI can never pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from tracker.foundation.database import make_engine, session_factory, upgrade
from tracker.mqtt.broker import EMBEDDED_BROKER_MQTT_VERSIONS, EmbeddedBroker

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_MOSQUITTO_URL = "mqtt://127.0.0.1:1883"
# Debian's Chromium by default: Playwright cannot download browsers here.
CHROMIUM = Path(os.environ.get("TRACKER_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def services_required() -> bool:
    return os.environ.get("TRACKER_TEST_REQUIRE_SERVICES", "") == "1"


def unavailable(what: str) -> None:
    """Skip (or, when services are required, fail) because a server is not reachable."""
    if services_required():
        pytest.fail(f"{what} is required (TRACKER_TEST_REQUIRE_SERVICES=1) but unreachable")
    pytest.skip(f"{what} is not reachable")


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A fresh, migrated database: a SQLite file, or a private schema in PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tracker.db'}"
        upgrade(make_engine(url))
        yield url
        return
    base = os.environ.get("TRACKER_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)
    parts = urlsplit(base.replace("postgresql+psycopg", "postgresql"))
    if not port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        unavailable(f"PostgreSQL at {parts.hostname}:{parts.port or 5432}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options=-csearch_path%3D{schema}"
    engine = make_engine(url)
    upgrade(engine)
    yield url
    engine.dispose()
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def db(database_url):
    """A session factory on the fresh database."""
    engine = make_engine(database_url)
    yield session_factory(engine)
    engine.dispose()


@dataclass(frozen=True)
class BrokerUnderTest:
    name: str
    url: str
    protocol: str  # "5" or "3.1.1"
    redelivers_unacked: bool


@pytest.fixture(params=["mosquitto", "embedded"])
def mqtt_broker(request):
    """A real MQTT broker: Mosquitto on this machine (MQTT 5), or the embedded one (3.1.1)."""
    if request.param == "mosquitto":
        url = os.environ.get("TRACKER_TEST_MQTT_URL", DEFAULT_MOSQUITTO_URL)
        parts = urlsplit(url)
        if not port_open(parts.hostname, parts.port or 1883):
            unavailable(f"Mosquitto at {parts.hostname}:{parts.port or 1883}")
        yield BrokerUnderTest("mosquitto", url, "5", redelivers_unacked=True)
        return
    with EmbeddedBroker() as broker:
        yield BrokerUnderTest(
            "embedded", broker.url, EMBEDDED_BROKER_MQTT_VERSIONS[-1], redelivers_unacked=False
        )


def launch_chromium(playwright):
    """Launch Debian's Chromium headless through Playwright (or skip/fail without it)."""
    if not CHROMIUM.exists():
        unavailable(f"Chromium at {CHROMIUM}")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture
def chromium():
    """A headless Chromium for one test."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@contextlib.contextmanager
def served_by_waitress(app) -> Iterator[str]:
    """Serve a WSGI app with waitress on a free loopback port; yield its base URL."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, name="waitress", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        server.task_dispatcher.shutdown()
        thread.join(timeout=10)


def console_problems(page) -> list[str]:
    """Collect a page's script errors and console errors (a CSP violation is one)."""
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(message.text)
            if message.type == "error"
            and "favicon.ico" not in message.text
            and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


class PrivateMosquitto:
    """A Mosquitto of one's own on a free loopback port, to stop and start again at will.

    It keeps every queued message (max_queued_messages 0), logs to a file in `folder`, and
    takes further configuration lines (persistence, TLS). Used by the ingest tests that
    restart their broker or speak TLS, and by bench/bench_ingest.py.
    """

    def __init__(self, folder: Path, *settings: str, tls: bool = False) -> None:
        if shutil.which("mosquitto") is None:
            unavailable("the mosquitto program")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.tls = tls
        folder.mkdir(exist_ok=True)
        self.log = folder / "mosquitto.log"
        self.config = folder / "mosquitto.conf"
        # "user root": started as root, Mosquitto would otherwise run as the user mosquitto,
        # which cannot reach pytest's folders to write its log and persistence file (it has
        # no effect when not started as root).
        self.config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "max_queued_messages 0",
                    "user root",
                    f"log_dest file {self.log}",
                    *settings,
                ]
            )
            + "\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> PrivateMosquitto:
        self.process = subprocess.Popen(
            ["mosquitto", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the private Mosquitto did not start; see {self.log}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # Mosquitto saves a persistence file on the way out
            self.process.wait(timeout=30)

    def dropped_warnings(self) -> int:
        """How many times the broker logged that it dropped messages for a client."""
        try:
            return self.log.read_text(errors="replace").count("being dropped")
        except OSError:
            return -1


def _process_state(stat: str) -> tuple[str, int]:
    """(state, parent pid) from the text of /proc/<pid>/stat (the name may hold spaces)."""
    state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
    return state, int(parent)


def descendants(root: int) -> list[int]:
    """The living (not zombie) descendants of a process, children first, from /proc."""
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = _process_state((entry / "stat").read_text())
            except (OSError, ValueError, IndexError):
                continue
            if state != "Z":
                parent_of[int(entry.name)] = parent
    found, frontier = [], {root}
    while frontier:
        frontier = {pid for pid, parent in parent_of.items() if parent in frontier}
        found.extend(sorted(frontier))
    return found


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return _process_state(Path(f"/proc/{pid}/stat").read_text())[0] != "Z"
    except OSError:
        return False
