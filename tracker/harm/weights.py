"""Harm weights (docs/harm.md): days of custody per crime type or offence code.

A weights file is YAML with a `name`, a `weights` mapping (crime type or offence code to a
number of days, 0 or more) and optional `notes`. A crime is weighed by its offence code if
the file lists it, else by its crime type; a crime whose code and type are both unlisted
weighs 0 (and is reported as unweighted, so that nothing drops out unseen).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from tracker.foundation import parsing, settings

DEFAULT_WEIGHTS_FILE = settings.PROJECT_ROOT / "geofences" / "harm_weights_police_uk.yaml"
TOP_KEYS = ("name", "weights", "notes")
MAX_NAME = 200
MAX_KEY = 200  # a crime type's column
MAX_WEIGHT_DAYS = 365 * 100  # a whole-life term is the most any guideline starts from


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the line and the problem."""


@dataclass(frozen=True)
class HarmWeights:
    """A named table of harm weights, in days."""

    name: str
    weights: Mapping[str, float]
    notes: str = ""

    def weigh(
        self, crime_types: Sequence[str] | pd.Series, offence_codes: Sequence[Any] | None = None
    ) -> np.ndarray:
        """Return each crime's weight: its offence code's if listed, else its type's, else 0."""
        types = pd.Series(crime_types, dtype=object)
        weights = types.map(self.weights).to_numpy(dtype=float, na_value=np.nan)
        if offence_codes is not None:
            by_code = (
                pd.Series(offence_codes, dtype=object)
                .map(self.weights)
                .to_numpy(dtype=float, na_value=np.nan)
            )
            weights = np.where(np.isnan(by_code), weights, by_code)
        return np.nan_to_num(weights, nan=0.0)

    def is_listed(
        self, crime_types: Sequence[str] | pd.Series, offence_codes: Sequence[Any] | None = None
    ) -> np.ndarray:
        """Return, per crime, whether its code or type is in the table (else it weighs 0)."""
        listed = pd.Series(crime_types, dtype=object).isin(self.weights.keys()).to_numpy()
        if offence_codes is not None:
            by_code = pd.Series(offence_codes, dtype=object).isin(self.weights.keys()).to_numpy()
            listed = listed | by_code
        return listed


def load_weights(path: str | Path | None = None) -> HarmWeights:
    """Read a weights file (default: the shipped police.uk weights)."""
    path = DEFAULT_WEIGHTS_FILE if path is None else Path(path)
    return parse_weights(parsing.read_text(path, WeightsError), source=str(path))


def parse_weights(text: str, source: str = "weights") -> HarmWeights:
    """Validate weights YAML text; raise WeightsError naming every problem with its line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise WeightsError(f"{source}: not valid YAML: {exc}") from exc
    problems: list[str] = []

    def problem(node: yaml.Node, text: str) -> None:
        problems.append(f"{source}: line {node.start_mark.line + 1}: {text}")

    if not isinstance(root, yaml.MappingNode):
        raise WeightsError(f"{source}: expected a mapping with name and weights")
    top = _entries(root, "", TOP_KEYS, problem)
    name = notes = ""
    if "name" not in top:
        problems.append(f"{source}: missing name")
    else:
        name = _text(top["name"], "name", MAX_NAME, problem)
    if "notes" in top:
        notes = _text(top["notes"], "notes", 10_000, problem)
    weights: dict[str, float] = {}
    if "weights" not in top:
        problems.append(f"{source}: missing weights")
    elif not isinstance(top["weights"], yaml.MappingNode) or not top["weights"].value:
        problem(top["weights"], "weights: expected a mapping of crime types to days")
    else:
        for key, node in _entries(top["weights"], "weights", (), problem).items():
            days = _number(node)
            if days is None:
                problem(node, f"weights.{key}: expected days from 0 to {MAX_WEIGHT_DAYS:,}")
            else:
                weights[key] = days
    if problems:
        raise WeightsError("\n".join(problems))
    return HarmWeights(name=name, weights=weights, notes=notes)


def _entries(node: yaml.MappingNode, where: str, allowed: tuple[str, ...], problem) -> dict:
    """Return {key: value node}; keys that are not plain text, unknown or repeated are errors."""
    entries: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = key_node.value.strip() if isinstance(key_node, yaml.ScalarNode) else ""
        label = f"{where}.{key}" if where else key
        if not key or len(key) > MAX_KEY or any(ord(c) < 32 for c in key):
            problem(
                key_node, f"{where or 'file'}: expected a plain key of 1 to {MAX_KEY} characters"
            )
        elif key in entries:
            problem(key_node, f"{label}: repeated (first on line {_line_of(entries[key])})")
        elif allowed and key not in allowed:
            problem(key_node, f"{label}: unknown key (expected {', '.join(allowed)})")
        else:
            entries[key] = value_node
    return entries


def _line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _text(node: yaml.Node, label: str, limit: int, problem) -> str:
    if not isinstance(node, yaml.ScalarNode) or not node.value.strip():
        problem(node, f"{label}: expected text")
        return ""
    text = node.value.strip()
    if len(text) > limit:
        problem(node, f"{label}: longer than {limit:,} characters")
    return text


def _number(node: yaml.Node) -> float | None:
    if not isinstance(node, yaml.ScalarNode):
        return None
    try:
        value = yaml.safe_load(node.value) if node.style is None else None
    except yaml.YAMLError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    days = float(value)
    return days if math.isfinite(days) and 0 <= days <= MAX_WEIGHT_DAYS else None
