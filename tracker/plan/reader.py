"""Reading a YAML plan file: every problem reported with its line and field, nothing half
read. The format is documented in docs/plan.md; what it reads into is tracker.plan.targets."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from datetime import date, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

from tracker.dosage.engine import DosageParams
from tracker.foundation import parsing
from tracker.plan.models import DEFAULT_MIN_VISIT_MINUTES
from tracker.plan.targets import (
    HOTSPOT_KEYS,
    PHASE_KEYS,
    PRESENCE_KEYS,
    PRESENCE_PER_DAY,
    PRESENCE_PER_WEEK,
    TARGET_KEYS,
    TOP_KEYS,
    WINDOW_SYNTAX,
    PatrolWindow,
    Phase,
    Plan,
    PlanError,
    parse_window,
)

MAX_OPERATION_DAYS = 5 * 365 + 2  # five years, leap days included


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
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # reported below as not a date
                value = date.fromisoformat(value.strip())
        if isinstance(value, date):
            try:
                return parsing.check_day(value)
            except ValueError as exc:
                self.error(_line(node), field_name, str(exc))
                return None
        if value is not None or isinstance(node, yaml.ScalarNode):
            self.error(_line(node), field_name, f"expected a date (YYYY-MM-DD), not {value!r}")
        return None

    def number(self, node: yaml.Node, field_name: str) -> float | None:
        value = self.scalar(node, field_name)
        number = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            with contextlib.suppress(OverflowError):  # an integer too large for a float
                number = float(value)
        if number is None or not math.isfinite(number) or number < 0:
            if value is not None or isinstance(node, yaml.ScalarNode):
                self.error(
                    _line(node), field_name, f"expected a number >= 0, not {_shown(node, value)}"
                )
            return None
        return number

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
    return parsing.shortened(node.value if isinstance(node, yaml.ScalarNode) else value)


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
    elif start and end and (end - start).days + 1 > MAX_OPERATION_DAYS:
        reader.error(
            _line(top["end"][1]),
            "end",
            f"the operation would run {(end - start).days + 1:,} days; at most "
            f"{MAX_OPERATION_DAYS:,} (5 years)",
        )
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


def require_dosage_tz(plan: Plan, dosage_tz: str, source: str) -> None:
    """Refuse a plan whose time zone is not that of the stored dosage days (TRACKER_TZ).

    Stored dosage is binned into TRACKER_TZ days and hours; other days would not match.
    """
    if plan.tz != dosage_tz:
        raise PlanError(
            f"{source}: tz {plan.tz} differs from TRACKER_TZ {dosage_tz}, the time "
            "zone of the stored dosage days; change one of them"
        )
