"""A Mosquitto 2 configuration from the devices table: each device its own credentials and
only its own topic; the ingester reads them all (docs/operations.md).

Four files in one folder: `mosquitto.conf` (a listener, persistence, no anonymous clients),
`passwd` (Mosquitto's own salted PBKDF2 hashes, made by `mosquitto_passwd`), `acl` and
`credentials.csv` (username, password, role; mode 600), the only place a password is kept
in clear, so that a re-run can keep each one. Free of any MQTT library: the broker is
configured, not spoken to.

Broker user names: a native device `radio-7` logs in as `radio-7` and may publish only on
`patrol/radio-7/location`. An OwnTracks device `alice/phone` logs in as `alice`, because
the OwnTracks apps build their topic `owntracks/<user>/<device>` from the user name they
log in with; so `alice` may publish on the topics of each of her devices (and their
sub-topics, docs/ingest.md), and on nobody else's.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.dosage.payloads import NATIVE_PREFIX, OWNTRACKS_PREFIX
from tracker.foundation.models import Device

CONFIG_FILE = "mosquitto.conf"
PASSWD_FILE = "passwd"  # noqa: S105 (a file name)
ACL_FILE = "acl"
CREDENTIALS_FILE = "credentials.csv"
CREDENTIAL_COLUMNS = ("username", "password", "role")
DEVICE_ROLE = "device"
INGESTER_ROLE = "ingester"
INGESTER_USERNAME = "tracker-ingester"
# What the ingester may read: every device topic, OwnTracks sub-topics included, so that
# TRACKER_MQTT_TOPICS may be widened to owntracks/# without touching the broker.
INGESTER_READS = (f"{NATIVE_PREFIX}/+/location", f"{OWNTRACKS_PREFIX}/#")
PASSWORD_BYTES = 24  # 32 URL-safe characters: no ':' (passwd's separator), no spaces
DEFAULT_DATA_DIR = "/var/lib/mosquitto"
# Characters a broker user name or a topic level built from a device id must not hold: a
# '+' or '#' would be a wildcard in the ACL (write access to every device), ':' ends the
# user name in `passwd`, whitespace and control characters end a line or a token.
FORBIDDEN = frozenset("+#:") | frozenset(chr(c) for c in range(33)) | {"\x7f"}


class BrokerConfigError(ValueError):
    """The configuration cannot be written (the message says why); nothing was changed."""


@dataclass(frozen=True)
class Credential:
    username: str
    password: str
    role: str


@dataclass(frozen=True)
class ListenerOptions:
    """Where Mosquitto listens and keeps its persistence file."""

    port: int | None = None  # None: 1883, or 8883 with TLS
    address: str = ""  # empty: every interface
    tls_cert: Path | None = None
    tls_key: Path | None = None
    data_dir: str = DEFAULT_DATA_DIR

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass
class Outcome:
    """What a run wrote: user names by change, and device ids that got no credentials."""

    devices: list[str] = field(default_factory=list)  # broker users of role device
    new: list[str] = field(default_factory=list)
    rotated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (device id, why)


def device_grants(device_ids: Iterable[str]) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """Return ({broker user name: topics it may publish on}, [(device id, why skipped)]).

    A device id that cannot safely be a user name or topic level (FORBIDDEN characters, an
    OwnTracks id not of the form user/device, a clash with the ingester or with another
    device's user name) gets no credentials rather than a wrong grant.
    """
    grants: dict[str, list[str]] = {}
    owners: dict[str, str] = {}  # user name -> kind ("native" or "owntracks")
    skipped: list[tuple[str, str]] = []
    for device_id in sorted(set(device_ids)):
        if FORBIDDEN & set(device_id):
            skipped.append((device_id, "has a character not allowed in a broker user or topic"))
            continue
        parts = device_id.split("/")
        if len(parts) == 1 and device_id:
            kind, username = "native", device_id
            topics = [f"{NATIVE_PREFIX}/{device_id}/location"]
        elif len(parts) == 2 and all(parts):
            kind, username = "owntracks", parts[0]
            base = f"{OWNTRACKS_PREFIX}/{device_id}"
            topics = [base, f"{base}/+"]
        else:
            skipped.append((device_id, "is neither a device id nor an OwnTracks user/device"))
            continue
        if username == INGESTER_USERNAME:
            skipped.append((device_id, f"would log in as the ingester's user {username!r}"))
            continue
        if owners.setdefault(username, kind) != kind:
            skipped.append((device_id, f"would share the broker user {username!r}"))
            continue
        grants.setdefault(username, []).extend(topics)
    return grants, skipped


def read_credentials(path: Path) -> dict[str, Credential]:
    """Return the credentials a previous run wrote (none if there is no such file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise BrokerConfigError(f"cannot read {path}: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if tuple(reader.fieldnames or ()) != CREDENTIAL_COLUMNS:
        raise BrokerConfigError(f"{path}: expected the header {','.join(CREDENTIAL_COLUMNS)}")
    found = {}
    for row in reader:
        if not row.get("username") or not row.get("password"):
            raise BrokerConfigError(f"{path}: line {reader.line_num}: missing username or password")
        found[row["username"]] = Credential(row["username"], row["password"], row["role"])
    return found


def plan_credentials(
    grants: dict[str, list[str]],
    existing: dict[str, Credential],
    rotate: Iterable[str] = (),
) -> tuple[list[Credential], Outcome]:
    """Return the credentials to write (devices sorted, then the ingester) and what changed.

    Existing passwords are kept unless rotated; `rotate` names broker users, native device
    ids, OwnTracks user/device ids (which rotate their user's password) or the ingester.
    """
    wanted = {*grants, INGESTER_USERNAME}
    to_rotate = set()
    for name in rotate:
        username = name.split("/")[0] if "/" in name else name
        if username not in wanted:
            raise BrokerConfigError(f"cannot rotate {name!r}: no such device or broker user")
        to_rotate.add(username)
    outcome = Outcome(devices=sorted(grants))
    credentials = []
    for username in [*sorted(grants), INGESTER_USERNAME]:
        role = INGESTER_ROLE if username == INGESTER_USERNAME else DEVICE_ROLE
        kept = existing.get(username)
        if kept is None:
            outcome.new.append(username)
        elif username in to_rotate:
            outcome.rotated.append(username)
        else:
            credentials.append(Credential(username, kept.password, role))
            continue
        credentials.append(Credential(username, secrets.token_urlsafe(PASSWORD_BYTES), role))
    outcome.removed = sorted(set(existing) - wanted)
    return credentials, outcome


def acl_text(grants: dict[str, list[str]]) -> str:
    """Return Mosquitto's ACL file: each device its topics (write), the ingester every one
    (read). With an ACL file, whatever is not granted is refused."""
    lines = [
        "# Written by `tracker broker config` from the devices table; re-run it, do not edit.",
        "# A device may publish only on its own topics; only the ingester may read them.",
        "",
    ]
    for username in sorted(grants):
        lines.append(f"user {username}")
        lines.extend(f"topic write {topic}" for topic in grants[username])
        lines.append("")
    lines.append(f"user {INGESTER_USERNAME}")
    lines.extend(f"topic read {topic}" for topic in INGESTER_READS)
    return "\n".join(lines) + "\n"


def mosquitto_conf_text(out_dir: Path, listener: ListenerOptions) -> str:
    """Return mosquitto.conf: one listener, persistence, no anonymous clients, the files."""
    port = listener.port or (8883 if listener.tls else 1883)
    lines = [
        "# Mosquitto 2 configuration written by `tracker broker config`; re-run it, do not edit.",
        "# Reload Mosquitto (SIGHUP) after a re-run to apply passwd and acl; restart it for",
        "# a changed listener.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {out_dir / PASSWD_FILE}",
        f"acl_file {out_dir / ACL_FILE}",
        "",
        "# Unacknowledged QoS 1 messages are kept for a stopped or slow ingester, without a",
        "# count limit (Mosquitto's default of 1000 silently drops the rest: docs/ingest.md);",
        "# the bound is memory and the ingester's session expiry (7 days by default).",
        "max_queued_messages 0",
        "persistence true",
        f"persistence_location {listener.data_dir.rstrip('/')}/",
        "# Saved every 60 s and at shutdown: a crash of the broker loses at most the last",
        "# minute of messages not yet delivered (the default is 30 minutes).",
        "autosave_interval 60",
        "",
        f"listener {port}{' ' + listener.address if listener.address else ''}",
    ]
    if listener.tls:
        lines += [
            f"certfile {listener.tls_cert}",
            f"keyfile {listener.tls_key}",
            "tls_version tlsv1.2",
        ]
    return "\n".join(lines) + "\n"


def credentials_csv(credentials: Iterable[Credential]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CREDENTIAL_COLUMNS)
    writer.writerows((c.username, c.password, c.role) for c in credentials)
    return out.getvalue()


def write_broker_config(
    session: Session,
    out_dir: Path,
    listener: ListenerOptions = ListenerOptions(),
    rotate: Iterable[str] = (),
    passwd_program: str = "mosquitto_passwd",  # noqa: S107 (a program)
) -> Outcome:
    """Write the four files for the devices now in the table; return what changed.

    Every file is written in full beside its target and then renamed over it, the
    credentials first, so an interrupted run leaves each file whole and no password that
    `passwd` accepts missing from credentials.csv.
    """
    if (listener.tls_cert is None) != (listener.tls_key is None):
        raise BrokerConfigError("TLS needs both a certificate and its key")
    program = shutil.which(passwd_program)
    if program is None:
        raise BrokerConfigError(
            f"{passwd_program} not found: install Mosquitto (Debian: apt-get install mosquitto)"
        )
    out_dir = out_dir.resolve()
    out_dir.mkdir(mode=0o750, parents=True, exist_ok=True)  # it will hold credentials.csv
    listener = ListenerOptions(
        listener.port,
        listener.address,
        listener.tls_cert.resolve() if listener.tls_cert else None,
        listener.tls_key.resolve() if listener.tls_key else None,
        listener.data_dir,
    )
    grants, skipped = device_grants(session.scalars(select(Device.id)))
    credentials, outcome = plan_credentials(
        grants, read_credentials(out_dir / CREDENTIALS_FILE), rotate
    )
    outcome.skipped = skipped

    staged: list[tuple[Path, Path]] = []
    try:
        staged.append(_stage(out_dir, CREDENTIALS_FILE, credentials_csv(credentials), 0o600))
        staged.append(_stage_passwd(out_dir, credentials, program))
        staged.append(_stage(out_dir, ACL_FILE, acl_text(grants), 0o640))
        staged.append(_stage(out_dir, CONFIG_FILE, mosquitto_conf_text(out_dir, listener), 0o644))
    except BaseException:
        for temporary, _target in staged:
            temporary.unlink(missing_ok=True)
        raise
    for temporary, target in staged:
        os.replace(temporary, target)
    return outcome


def _stage(out_dir: Path, name: str, text: str, mode: int) -> tuple[Path, Path]:
    """Write text to a new file beside `name`; return (that file, the target)."""
    target = out_dir / name
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=out_dir)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
        _like_target(Path(temporary), target, mode)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary), target


def _stage_passwd(out_dir: Path, credentials: list[Credential], program: str) -> tuple[Path, Path]:
    """Hash the passwords into Mosquitto's format: `mosquitto_passwd -U` on a plain file.

    The plain file is created with mode 600 and never leaves the output folder; passwords
    are never on a command line, where `ps` would show them.
    """
    plain = "".join(f"{c.username}:{c.password}\n" for c in credentials)
    temporary, target = _stage(out_dir, PASSWD_FILE, plain, 0o600)
    try:
        done = subprocess.run(  # noqa: S603 (the installed mosquitto_passwd, our own file)
            [program, "-U", str(temporary)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerConfigError(
                f"mosquitto_passwd failed ({done.returncode}): {done.stderr.strip()}"
            )
        if ":$" not in temporary.read_text(encoding="utf-8").split("\n", 1)[0]:
            raise BrokerConfigError("mosquitto_passwd left the passwords unhashed")
        _like_target(temporary, target, 0o640)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary, target


def _like_target(path: Path, target: Path, mode: int) -> None:
    """Give a new file the mode wanted and, if it replaces one, the old file's group.

    Mosquitto rereads passwd and acl on SIGHUP after dropping its privileges, so an operator
    gives them its group once (docs/operations.md); a re-run keeps that group.
    """
    try:
        group = target.stat().st_gid
    except FileNotFoundError:
        group = None
    if group is not None and group != path.stat().st_gid:
        with contextlib.suppress(PermissionError):  # not ours to give: set it again by hand
            os.chown(path, -1, group)
    os.chmod(path, mode)
