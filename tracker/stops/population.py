"""Population figures for disproportionality.

Two files: a `group,population` CSV of the five broad groups (load_group_population, for
the search figures), and the dashboard's JSON of residents per ethnic group, which maps
either full self-defined ethnicities ("White - Irish") or broad groups ("White") to a
population; which of the two decides the table the rates are shown in.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping

from tracker.foundation import parsing


class PopulationError(ValueError):
    """A population file that cannot be used (the figures are shown without it)."""


def load_population(path: str) -> dict[str, float]:
    """Read a JSON object mapping ethnic group to population, or raise PopulationError."""
    text = parsing.read_text(path, PopulationError, label="POPULATION_FILE ")
    try:
        data = parsing.json_loads(text)
    except ValueError as exc:
        raise PopulationError(f"POPULATION_FILE {path}: not JSON: {exc}") from exc
    if not isinstance(data, dict) or not data:
        raise PopulationError(
            f'POPULATION_FILE {path}: expected a JSON object {{"ethnic group": population, ...}}'
        )
    for group, value in data.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (math.isfinite(value) and value > 0)
        ):
            raise PopulationError(
                f"POPULATION_FILE {path}: the population of {group!r} must "
                f"be a positive number, not {value!r}"
            )
    return {group: float(value) for group, value in data.items()}


def population_level(population: Mapping[str, float]) -> str:
    """Return the column a population table is keyed by: full self-defined ethnicities
    ("White - Irish") or broad groups ("White")."""
    if any(" - " in group for group in population):
        return "self_defined_ethnicity"
    return "self_defined_ethnic_group"


BROAD_GROUPS = ("Asian", "Black", "Mixed", "White", "Other")  # the census's broad groups


def load_group_population(path: str) -> dict[str, float]:
    """Read a `group,population` CSV of the five broad groups, or raise PopulationError
    naming the line that is wrong."""
    text = parsing.read_text(path, PopulationError, label="population file ")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != ["group", "population"]:
        raise PopulationError(f"{path}: line 1: the header must be group,population")
    population: dict[str, float] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 2:
            raise PopulationError(f"{path}: line {line}: expected group,population")
        group, value = row[0].strip(), row[1].strip()
        if group not in BROAD_GROUPS:
            raise PopulationError(
                f"{path}: line {line}: {parsing.shortened(group)} is not one of "
                f"{', '.join(BROAD_GROUPS)}"
            )
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise PopulationError(
                f"{path}: line {line}: the population of {group} must be a positive number, "
                f"not {parsing.shortened(value)}"
            )
        if group in population:
            raise PopulationError(f"{path}: line {line}: {group} is listed twice")
        population[group] = number
    missing = [g for g in BROAD_GROUPS if g not in population]
    if missing:
        raise PopulationError(f"{path}: no population for {', '.join(missing)}")
    return population
