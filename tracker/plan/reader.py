"""The plan of an operation (DESIGN section 6): read and validate a YAML plan, store it.

A plan file names the operation, its local dates and time zone, optional `defaults` and the
hot spots. Targets are layered: `defaults`, then the hot spot's own keys, then a phase's
keys; a layer that sets either presence target replaces both of the layer below (a phase
may switch from minutes per day to minutes per week). A hot spot without `phases` has one
phase for the whole operation; days that no phase covers carry no target.

Patrol windows ("Fri-Sat 18:00-02:00") are whole local clock hours, because presence is
stored per local clock hour. A window belongs to the day it opens on, including the hours
after midnight. In a phase with windows the targets apply on the days a window opens (the
per-week target is shared equally between those weekdays) and only presence and visits
inside the windows count towards them; without windows every day of the phase has the
target (the per-week target is one seventh a day).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from yaml.constructor import ConstructorError, SafeConstructor

from tracker.accounts.audit import record
from tracker.dosage.engine import DosageParams
from tracker.foundation import parsing
from tracker.foundation.clock import local_today
from tracker.foundation.models import HotSpotRow, utc_now
from tracker.plan.models import DEFAULT_MIN_VISIT_MINUTES, Operation, OperationHotSpot, PlanPhase

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MINUTES_PER_DAY = 24 * 60
HOURS_AFTER_OPENING = 48  # a window opening late in the day may run into the next morning

PRESENCE_PER_DAY = "presence_minutes_per_day"
PRESENCE_PER_WEEK = "presence_minutes_per_week"
PRESENCE_KEYS = (PRESENCE_PER_DAY, PRESENCE_PER_WEEK)
NUMBER_KEYS = (
    PRESENCE_PER_DAY,
    PRESENCE_PER_WEEK,
    "visits_per_day",
    "min_visit_minutes",
    "max_presence_minutes_per_day",
)
TARGET_KEYS = (*NUMBER_KEYS, "windows")
TOP_KEYS = ("operation", "start", "end", "tz", "defaults", "hotspots")
PHASE_KEYS = ("from", "to", *TARGET_KEYS)
HOTSPOT_KEYS = (*TARGET_KEYS, "phases")

PLAN_COLUMNS = [
    "operation",
    "hotspot_id",
    "from",
    "to",
    PRESENCE_PER_DAY,
    PRESENCE_PER_WEEK,
    "visits_per_day",
    "min_visit_minutes",
    "max_presence_minutes_per_day",
    "windows",
]


class PlanError(ValueError):
    """A plan that cannot be loaded; the message has one line per problem, with its line."""


@dataclass(frozen=True)
class PatrolWindow:
    """Whole local clock hours on some weekdays; ends the next morning when end <= start."""

    weekdays: tuple[int, ...]  # 0 = Monday, as date.weekday()
    start_hour: int  # 0-23
    end_hour: int  # 1-24, or at/before start_hour for the next morning

    def offsets(self) -> range:
        """Return the hours it covers, counted from the midnight of the day it opens."""
        end = self.end_hour if self.end_hour > self.start_hour else self.end_hour + 24
        return range(self.start_hour, end)

    def text(self) -> str:
        """Return the window as written in a plan, e.g. "Fri-Sat 18:00-02:00"."""
        return f"{_weekdays_text(self.weekdays)} {self.start_hour:02d}:00-{self.end_hour:02d}:00"

    def to_json(self) -> dict[str, Any]:
        return {
            "weekdays": list(self.weekdays),
            "start_hour": self.start_hour,
            "end_hour": self.end_hour,
        }

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> PatrolWindow:
        return cls(tuple(value["weekdays"]), int(value["start_hour"]), int(value["end_hour"]))


_WINDOW = re.compile(
    r"^\s*(?:(?P<days>[A-Za-z][A-Za-z ,\-]*?)\s+)?"
    r"(?P<start>\d{1,2}):(?P<start_min>\d{2})\s*-\s*"
    r"(?P<end>\d{1,2}):(?P<end_min>\d{2})\s*$"
)
WINDOW_SYNTAX = 'e.g. "Fri-Sat 18:00-02:00", "Mon,Wed 08:00-10:00" or "Daily 22:00-24:00"'


def parse_window(text: str) -> PatrolWindow:
    """Parse "Fri-Sat 18:00-02:00" (days optional: every day); raise ValueError saying why."""
    match = _WINDOW.match(text)
    if not match:
        raise ValueError(f"cannot read window {text!r}: write days and hours, {WINDOW_SYNTAX}")
    if match["start_min"] != "00" or match["end_min"] != "00":
        raise ValueError(f"window {text!r}: whole hours only (presence is stored per clock hour)")
    start, end = int(match["start"]), int(match["end"])
    if start > 23 or end > 24:
        raise ValueError(f"window {text!r}: hours run from 00:00 to 24:00")
    if start == end % 24 and not (start == 0 and end == 24):
        raise ValueError(
            f"window {text!r} starts and ends at the same hour (use 00:00-24:00 for a whole day)"
        )
    weekdays = _parse_weekdays(match["days"], text) if match["days"] else tuple(range(7))
    return PatrolWindow(weekdays, start, end)


def _weekday(name: str, text: str) -> int:
    key = name.strip()[:3].title()
    full = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
    if key in WEEKDAYS and full[WEEKDAYS.index(key)].lower().startswith(name.strip().lower()):
        return WEEKDAYS.index(key)
    raise ValueError(f"window {text!r}: unknown day {name.strip()!r} (use Mon, Tue, ... Sun)")


def _parse_weekdays(days: str, text: str) -> tuple[int, ...]:
    if days.strip().lower() == "daily":
        return tuple(range(7))
    chosen: set[int] = set()
    for item in days.split(","):
        if not item.strip():
            raise ValueError(f"window {text!r}: empty day in {days.strip()!r}")
        first, _, last = item.partition("-")
        a = _weekday(first, text)
        b = _weekday(last, text) if last else a
        chosen.update((a + i) % 7 for i in range((b - a) % 7 + 1))  # Sat-Mon wraps
    return tuple(sorted(chosen))


def _weekdays_text(weekdays: tuple[int, ...]) -> str:
    if len(weekdays) == 7:
        return "Daily"
    runs: list[list[int]] = []
    for day in weekdays:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(
        WEEKDAYS[r[0]] if len(r) == 1 else f"{WEEKDAYS[r[0]]}-{WEEKDAYS[r[-1]]}" for r in runs
    )


@dataclass(frozen=True)
class Phase:
    """The targets of one hot spot from `starts` to `ends` (local dates, inclusive)."""

    hotspot_id: str
    starts: date
    ends: date
    presence_minutes_per_day: float | None
    presence_minutes_per_week: float | None
    visits_per_day: float | None = None
    min_visit_minutes: float = DEFAULT_MIN_VISIT_MINUTES
    max_presence_minutes_per_day: float | None = None
    windows: tuple[PatrolWindow, ...] = ()
    line: int = field(default=0, compare=False)

    def target_weekdays(self) -> tuple[int, ...]:
        """Return the weekdays with a target: every day, or the days a window opens."""
        if not self.windows:
            return tuple(range(7))
        return tuple(sorted({d for w in self.windows for d in w.weekdays}))

    def presence_target_minutes(self) -> float:
        """Return the presence target of each day that has one (see the module docstring)."""
        if self.presence_minutes_per_day is not None:
            return self.presence_minutes_per_day
        return (self.presence_minutes_per_week or 0.0) / len(self.target_weekdays())

    def window_hours(self) -> np.ndarray:
        """Return a (7, 48) mask: [weekday a day opens on, hour after its midnight] counts.

        Without windows, every hour of every day counts for that day.
        """
        mask = np.zeros((7, HOURS_AFTER_OPENING), dtype=bool)
        if not self.windows:
            mask[:, :24] = True
        for window in self.windows:
            for weekday in window.weekdays:
                mask[weekday, list(window.offsets())] = True
        return mask

    def summary(self) -> dict[str, Any]:
        """Return the phase as plain JSON values (for the audit log and the plan table)."""
        return {
            "hotspot_id": self.hotspot_id,
            "from": self.starts.isoformat(),
            "to": self.ends.isoformat(),
            PRESENCE_PER_DAY: self.presence_minutes_per_day,
            PRESENCE_PER_WEEK: self.presence_minutes_per_week,
            "visits_per_day": self.visits_per_day,
            "min_visit_minutes": self.min_visit_minutes,
            "max_presence_minutes_per_day": self.max_presence_minutes_per_day,
            "windows": "; ".join(w.text() for w in self.windows),
        }


@dataclass(frozen=True)
class Plan:
    """A validated plan: the operation and every hot spot's phases, sorted."""

    name: str
    start_date: date
    end_date: date
    tz: str
    hotspot_ids: tuple[str, ...]
    phases: tuple[Phase, ...]
    source: str = field(default="plan", compare=False)
    hotspot_lines: dict[str, int] = field(default_factory=dict, compare=False)

    def summary(self) -> dict[str, Any]:
        """Return the plan as plain JSON values (what the audit log keeps)."""
        return {
            "operation": self.name,
            "start": self.start_date.isoformat(),
            "end": self.end_date.isoformat(),
            "tz": self.tz,
            "hotspots": list(self.hotspot_ids),
            "phases": [p.summary() for p in self.phases],
        }


# --- reading YAML with line numbers -------------------------------------------------------


@dataclass
class _Value:
    """A value read from the file, with where it came from."""

    value: Any
    line: int
    field: str


class _Reader:
    """Walks the composed YAML nodes, collecting every problem with its line and field."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.errors: list[tuple[int, str]] = []
        self._constructor = SafeConstructor()

    def error(self, line: int, field_name: str, message: str) -> None:
        self.errors.append((line, f"{self.source}: line {line}: {field_name}: {message}"))

    def report(self) -> str:
        """Return every problem, one a line, in the order of the file."""
        return "\n".join(text for _, text in sorted(self.errors, key=lambda e: e[0]))

    def mapping(
        self, node: yaml.Node | None, field_name: str, allowed: tuple[str, ...]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Return {key: (key node, value node)}; unknown and repeated keys are errors."""
        if node is None or _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.error(_line(node), field_name, "expected a mapping of keys to values")
            return {}
        entries: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value.strip() if isinstance(key_node, yaml.ScalarNode) else None
            path = f"{field_name}.{key}" if field_name else str(key)
            if not key:
                self.error(_line(key_node), field_name or "plan", "expected a plain key")
            elif key in entries:
                self.error(
                    _line(key_node), path, f"repeated key (first on line {_line(entries[key][0])})"
                )
            elif allowed and key not in allowed:
                self.error(
                    _line(key_node),
                    path,
                    f"unknown key {key!r} (expected one of {', '.join(allowed)})",
                )
            else:
                entries[key] = (key_node, value_node)
        return entries

    def scalar(self, node: yaml.Node, field_name: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(_line(node), field_name, "expected a single value")
            return None
        try:
            return self._constructor.construct_object(node)
        except (ConstructorError, ValueError) as exc:
            self.error(_line(node), field_name, f"cannot read {node.value!r}: {exc}")
            return None

    def text(self, node: yaml.Node, field_name: str, max_length: int) -> str | None:
        value = self.scalar(node, field_name)
        if value is None:
            if isinstance(node, yaml.ScalarNode):
                self.error(_line(node), field_name, "must not be empty")
            return None
        text = str(value).strip()
        if not text or len(text) > max_length:
            self.error(_line(node), field_name, f"expected 1 to {max_length} characters")
            return None
        return text

    def date(self, node: yaml.Node, field_name: str) -> date | None:
        value = self.scalar(node, field_name)
        if isinstance(value, datetime):
            self.error(_line(node), field_name, "expected a date (YYYY-MM-DD), not a time")
            return None
        if isinstance(value, date):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        if value is not None or isinstance(node, yaml.ScalarNode):
            self.error(_line(node), field_name, f"expected a date (YYYY-MM-DD), not {value!r}")
        return None

    def number(self, node: yaml.Node, field_name: str) -> float | None:
        value = self.scalar(node, field_name)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            if value is not None or isinstance(node, yaml.ScalarNode):
                self.error(
                    _line(node), field_name, f"expected a number >= 0, not {_shown(node, value)}"
                )
            return None
        return float(value)

    def windows(self, node: yaml.Node, field_name: str) -> tuple[PatrolWindow, ...] | None:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        windows: list[PatrolWindow] = []
        for index, item in enumerate(items):
            path = f"{field_name}[{index}]" if isinstance(node, yaml.SequenceNode) else field_name
            value = self.scalar(item, path)
            if not isinstance(value, str):
                if value is not None or isinstance(item, yaml.ScalarNode):
                    self.error(
                        _line(item),
                        path,
                        f"expected a window such as {WINDOW_SYNTAX}, not {value!r}",
                    )
                return None
            try:
                windows.append(parse_window(value))
            except ValueError as exc:
                self.error(_line(item), path, str(exc))
                return None
        return tuple(windows)

    def targets(
        self, entries: dict[str, tuple[yaml.Node, yaml.Node]], field_name: str
    ) -> dict[str, _Value]:
        """Read the target keys of one layer (defaults, a hot spot or a phase)."""
        layer: dict[str, _Value] = {}
        for key in TARGET_KEYS:
            if key not in entries:
                continue
            path = f"{field_name}.{key}"
            node = entries[key][1]
            value = self.windows(node, path) if key == "windows" else self.number(node, path)
            if value is not None:
                layer[key] = _Value(value, _line(node), path)
        if all(k in entries for k in PRESENCE_KEYS):
            self.error(
                _line(entries[PRESENCE_PER_WEEK][0]),
                f"{field_name}.{PRESENCE_PER_WEEK}",
                f"give {PRESENCE_PER_DAY} or {PRESENCE_PER_WEEK}, not both",
            )
        return layer


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


def _shown(node: yaml.Node, value: Any) -> str:
    return repr(node.value) if isinstance(node, yaml.ScalarNode) else repr(value)


def _layered(*layers: dict[str, _Value]) -> dict[str, _Value]:
    merged: dict[str, _Value] = {}
    for layer in layers:
        if any(k in layer for k in PRESENCE_KEYS):
            for key in PRESENCE_KEYS:
                merged.pop(key, None)
        merged.update(layer)
    return merged


def parse_plan(text: str, source: str = "plan", default_tz: str = DosageParams.tz) -> Plan:
    """Validate a YAML plan; raise PlanError naming the line and field of every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "line 1"
        problem = getattr(exc, "problem", None) or str(exc)
        raise PlanError(f"{source}: {where}: not valid YAML: {problem}") from None
    except RecursionError:  # PyYAML's composer recurses once per level of nesting
        raise PlanError(f"{source}: not valid YAML: lists or mappings nested too deeply") from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise PlanError(
            f"{source}: line {_line(root) if root else 1}: plan: expected a mapping "
            f"with the keys {', '.join(TOP_KEYS)}"
        )
    reader = _Reader(source)
    top = reader.mapping(root, "", TOP_KEYS)
    for key in ("operation", "start", "end", "hotspots"):
        if key not in top:
            reader.error(_line(root), key, "missing (required)")
    name = reader.text(top["operation"][1], "operation", 200) if "operation" in top else None
    start = reader.date(top["start"][1], "start") if "start" in top else None
    end = reader.date(top["end"][1], "end") if "end" in top else None
    if start and end and end < start:
        reader.error(_line(top["end"][1]), "end", f"{end} is before the start {start}")
        start = end = None
    tz = reader.text(top["tz"][1], "tz", 64) if "tz" in top else default_tz
    if tz is not None:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            reader.error(
                _line(top["tz"][1]),
                "tz",
                f"unknown time zone {tz!r} (use an IANA name such as Europe/London)",
            )
    defaults = (
        reader.targets(reader.mapping(top["defaults"][1], "defaults", TARGET_KEYS), "defaults")
        if "defaults" in top
        else {}
    )
    hotspot_ids: list[str] = []
    hotspot_lines: dict[str, int] = {}
    phases: list[Phase] = []
    if "hotspots" in top:
        hotspots_node = top["hotspots"][1]
        spots = reader.mapping(hotspots_node, "hotspots", ())
        if _is_null(hotspots_node) or (
            isinstance(hotspots_node, yaml.MappingNode) and not hotspots_node.value
        ):
            reader.error(_line(hotspots_node), "hotspots", "no hot spots")
        for hotspot_id, (key_node, value_node) in spots.items():
            if len(hotspot_id) > 64:
                reader.error(_line(key_node), f"hotspots.{hotspot_id}", "id longer than 64")
                continue
            hotspot_ids.append(hotspot_id)
            hotspot_lines[hotspot_id] = _line(key_node)
            phases += _hot_spot_phases(
                reader, hotspot_id, key_node, value_node, defaults, start, end
            )
    if reader.errors:
        raise PlanError(reader.report())
    phases.sort(key=lambda p: (p.hotspot_id, p.starts))
    return Plan(
        name, start, end, tz, tuple(sorted(hotspot_ids)), tuple(phases), source, hotspot_lines
    )


def _hot_spot_phases(
    reader: _Reader,
    hotspot_id: str,
    key_node: yaml.Node,
    value_node: yaml.Node,
    defaults: dict[str, _Value],
    start: date | None,
    end: date | None,
) -> list[Phase]:
    path = f"hotspots.{hotspot_id}"
    if not (_is_null(value_node) or isinstance(value_node, yaml.MappingNode)):
        reader.error(
            _line(value_node),
            path,
            "expected a mapping of targets and phases, "
            "or {} for the defaults over the whole operation",
        )
        return []
    entries = reader.mapping(value_node, path, HOTSPOT_KEYS)
    own = reader.targets(entries, path)
    if "phases" not in entries:
        targets = _layered(defaults, own)
        phase = _phase(reader, hotspot_id, start, end, targets, _line(key_node), path)
        return [phase] if phase else []
    phases_node = entries["phases"][1]
    if not isinstance(phases_node, yaml.SequenceNode) or not phases_node.value:
        reader.error(
            _line(phases_node),
            f"{path}.phases",
            "expected a list of phases, each a mapping with from, to and targets",
        )
        return []
    phases: list[Phase] = []
    for index, node in enumerate(phases_node.value):
        phase_path = f"{path}.phases[{index}]"
        phase_entries = reader.mapping(node, phase_path, PHASE_KEYS)
        if not isinstance(node, yaml.MappingNode):
            continue
        starts = (
            reader.date(phase_entries["from"][1], f"{phase_path}.from")
            if "from" in phase_entries
            else start
        )
        ends = (
            reader.date(phase_entries["to"][1], f"{phase_path}.to")
            if "to" in phase_entries
            else end
        )
        if start and end and starts and ends:
            for key, day in (("from", starts), ("to", ends)):
                if not start <= day <= end:
                    reader.error(
                        _line(phase_entries[key][1]),
                        f"{phase_path}.{key}",
                        f"{day} is outside the operation ({start} to {end})",
                    )
                    starts = ends = None
                    break
        if starts and ends and ends < starts:
            reader.error(
                _line(phase_entries["to"][1]), f"{phase_path}.to", f"{ends} is before from {starts}"
            )
            continue
        targets = _layered(defaults, own, reader.targets(phase_entries, phase_path))
        phase = _phase(reader, hotspot_id, starts, ends, targets, _line(node), phase_path)
        if phase:
            phases.append(phase)
    phases.sort(key=lambda p: p.starts)
    for before, after in pairwise(phases):
        if after.starts <= before.ends:
            reader.error(
                after.line,
                path,
                f"the phase from {after.starts} overlaps the one "
                f"on line {before.line} (to {before.ends})",
            )
    return phases


def _phase(
    reader: _Reader,
    hotspot_id: str,
    starts: date | None,
    ends: date | None,
    targets: dict[str, _Value],
    line: int,
    path: str,
) -> Phase | None:
    """Build one phase from its layered targets, checking the rules that join them."""
    if not any(k in targets for k in PRESENCE_KEYS):
        reader.error(
            line,
            path,
            f"no presence target: give {PRESENCE_PER_DAY} or "
            f"{PRESENCE_PER_WEEK} here or in defaults",
        )
        return None
    if starts is None or ends is None:
        return None
    values = {k: v.value for k, v in targets.items()}
    phase = Phase(
        hotspot_id,
        starts,
        ends,
        values.get(PRESENCE_PER_DAY),
        values.get(PRESENCE_PER_WEEK),
        values.get("visits_per_day"),
        values.get("min_visit_minutes", DEFAULT_MIN_VISIT_MINUTES),
        values.get("max_presence_minutes_per_day"),
        values.get("windows", ()),
        line,
    )
    daily = phase.presence_target_minutes()
    presence = targets.get(PRESENCE_PER_DAY) or targets[PRESENCE_PER_WEEK]
    hours = phase.window_hours()
    available = min(int(hours[d].sum()) for d in phase.target_weekdays()) * 60
    if daily > available:
        _blame(
            reader,
            presence,
            line,
            path,
            f"asks for {daily:g} minutes a day but its days have only {available} minutes"
            + (" of patrol window" if phase.windows else ""),
        )
    ceiling = targets.get("max_presence_minutes_per_day")
    if ceiling is not None and ceiling.value < daily:
        _blame(
            reader,
            ceiling,
            line,
            path,
            f"max_presence_minutes_per_day {ceiling.value:g} "
            f"is less than the presence target of {daily:g} minutes a day",
        )
    return phase


def _blame(reader: _Reader, value: _Value, line: int, path: str, message: str) -> None:
    """Report a problem of a phase at the value's line, or at the phase's if inherited."""
    if value.field.startswith(f"{path}."):
        reader.error(value.line, value.field, message)
    else:
        reader.error(line, path, f"{message} ({value.field} on line {value.line})")


def read_plan(path: str | Path, default_tz: str = DosageParams.tz) -> Plan:
    """Read and validate a YAML plan file."""
    text = parsing.read_text(path, PlanError)
    return parse_plan(text, source=str(path), default_tz=default_tz)


# --- storing and reading back --------------------------------------------------------------


def require_dosage_tz(plan: Plan, dosage_tz: str, source: str) -> None:
    """Refuse a plan whose time zone is not that of the stored dosage days (TRACKER_TZ).

    Stored dosage is binned into TRACKER_TZ days and hours; other days would not match.
    """
    if plan.tz != dosage_tz:
        raise PlanError(
            f"{source}: tz {plan.tz} differs from TRACKER_TZ {dosage_tz}, the time "
            "zone of the stored dosage days; change one of them"
        )


def load_plan(session: Session, plan: Plan, actor: str) -> Operation:
    """Create the operation or replace its plan; audited with before/after when it changes.

    Every hot spot must be in the stored hot spot set (PlanError names the line otherwise).
    """
    known = set(session.scalars(select(HotSpotRow.id)))
    unknown = sorted(
        (h for h in plan.hotspot_ids if h not in known), key=lambda h: plan.hotspot_lines.get(h, 0)
    )
    if unknown:
        raise PlanError(
            "\n".join(
                f"{plan.source}: line {plan.hotspot_lines.get(h, 1)}: hotspots.{h}: unknown hot "
                "spot (not in the stored hot spot set; load the geofences first)"
                for h in unknown
            )
        )
    operation = session.scalar(select(Operation).where(Operation.name == plan.name))
    before = stored_plan(session, operation).summary() if operation else None
    after = plan.summary()
    if before == after:
        return operation
    now = utc_now()
    if operation is None:
        operation = Operation(
            name=plan.name,
            start_date=plan.start_date,
            end_date=plan.end_date,
            tz=plan.tz,
            created_at=now,
        )
        session.add(operation)
    operation.start_date, operation.end_date, operation.tz = plan.start_date, plan.end_date, plan.tz
    operation.updated_at = now
    session.flush()
    for model in (PlanPhase, OperationHotSpot):
        session.execute(delete(model).where(model.operation_id == operation.id))
    session.add_all(
        OperationHotSpot(operation_id=operation.id, hotspot_id=h) for h in plan.hotspot_ids
    )
    session.add_all(
        PlanPhase(
            operation_id=operation.id,
            hotspot_id=p.hotspot_id,
            starts=p.starts,
            ends=p.ends,
            presence_minutes_per_day=p.presence_minutes_per_day,
            presence_minutes_per_week=p.presence_minutes_per_week,
            visits_per_day=p.visits_per_day,
            min_visit_minutes=p.min_visit_minutes,
            max_presence_minutes_per_day=p.max_presence_minutes_per_day,
            windows=[w.to_json() for w in p.windows] or None,
        )
        for p in plan.phases
    )
    session.flush()
    record(session, actor, "plan.load", f"operation {plan.name}", before, after)
    return operation


def stored_plan(session: Session, operation: Operation) -> Plan:
    """Return the stored plan of an operation."""
    hotspot_ids = session.scalars(
        select(OperationHotSpot.hotspot_id)
        .where(OperationHotSpot.operation_id == operation.id)
        .order_by(OperationHotSpot.hotspot_id)
    ).all()
    rows = session.scalars(
        select(PlanPhase)
        .where(PlanPhase.operation_id == operation.id)
        .order_by(PlanPhase.hotspot_id, PlanPhase.starts)
    ).all()
    phases = tuple(
        Phase(
            r.hotspot_id,
            r.starts,
            r.ends,
            r.presence_minutes_per_day,
            r.presence_minutes_per_week,
            r.visits_per_day,
            r.min_visit_minutes,
            r.max_presence_minutes_per_day,
            tuple(PatrolWindow.from_json(w) for w in r.windows or ()),
        )
        for r in rows
    )
    return Plan(
        operation.name,
        operation.start_date,
        operation.end_date,
        operation.tz,
        tuple(hotspot_ids),
        phases,
        source=f"operation {operation.name}",
    )


def operation_day(operation: Operation, day: date) -> int:
    """Return N for "day N of the operation" (1 on the start date)."""
    return (day - operation.start_date).days + 1


def find_operation(
    session: Session, name: str | None = None, now: datetime | None = None
) -> Operation:
    """Return the named operation, else the one running today, else the latest to start."""
    if name is not None:
        operation = session.scalar(select(Operation).where(Operation.name == name))
        if operation is None:
            raise PlanError(f"no operation named {name!r}")
        return operation
    operations = session.scalars(
        select(Operation).order_by(Operation.start_date.desc(), Operation.id.desc())
    ).all()
    if not operations:
        raise PlanError("no operation plan is loaded: run `python -m tracker plan load FILE`")
    running = [o for o in operations if o.start_date <= local_today(o.tz, now) <= o.end_date]
    return (running or operations)[0]


def plan_table(plan: Plan) -> pd.DataFrame:
    """Return the phases of a plan (PLAN_COLUMNS), one row per hot spot phase."""
    rows = [{"operation": plan.name, **p.summary()} for p in plan.phases]
    frame = pd.DataFrame(rows, columns=PLAN_COLUMNS)
    frame["from"] = [date.fromisoformat(d) for d in frame["from"]]
    frame["to"] = [date.fromisoformat(d) for d in frame["to"]]
    return frame
