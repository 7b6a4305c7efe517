"""Population figures for disproportionality: a JSON file of residents per ethnic group.

The file maps either full self-defined ethnicities ("White - Irish") or broad groups
("White") to a population; which of the two decides the table the rates are shown in.
"""

from __future__ import annotations

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
