"""The plan of an operation as values: its phases of targets and patrol windows.

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

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np

from tracker.plan.models import DEFAULT_MIN_VISIT_MINUTES

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
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
