"""Harm figures from the stored data: identification over stored crimes, and the evaluation
of a stored operation. Shared by the command line and the web page; never commits."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.dosage.geofence import HotSpotSet
from tracker.dosage.store import stored_hot_spots
from tracker.harm.crimes import crimes_frame, month_text, months_with_data
from tracker.harm.evaluate import (
    DEFAULT_BASELINE_MONTHS,
    DEFAULT_BUFFER_M,
    Evaluation,
    evaluate,
    evaluation_periods,
)
from tracker.harm.identify import (
    DEFAULT_CELL_M,
    DEFAULT_COUNT,
    DEFAULT_MIN_SPACING_M,
    Identification,
    IdentificationError,
    PlaceSet,
    identify,
)
from tracker.harm.weights import HarmWeights
from tracker.plan.models import Operation, OperationHotSpot


def identify_stored(
    session: Session,
    weights: HarmWeights,
    from_month: date,
    to_month: date,
    *,
    cell_m: int = DEFAULT_CELL_M,
    places: PlaceSet | None = None,
    count: int = DEFAULT_COUNT,
    min_spacing_m: float = DEFAULT_MIN_SPACING_M,
    validate_from: date | None = None,
    validate_to: date | None = None,
    places_source: str | None = None,
) -> Identification:
    """Choose hot spots from the stored crimes of the months (see identify)."""
    if from_month > to_month:
        raise IdentificationError("--from must not be after --to")
    crimes = crimes_frame(session, from_month, to_month)
    if crimes.empty:
        raise IdentificationError(
            f"no recorded crime from {month_text(from_month)} to {month_text(to_month)}: "
            "import some with `tracker crimes import FILE`"
        )
    validation = None
    if (validate_from is None) != (validate_to is None):
        raise IdentificationError("give both --validate-from and --validate-to, or neither")
    if validate_from is not None:
        if validate_from > validate_to:
            raise IdentificationError("--validate-from must not be after --validate-to")
        validation = crimes_frame(session, validate_from, validate_to)
    settings: dict[str, Any] = {
        "from": month_text(from_month),
        "to": month_text(to_month),
        "weights": weights.name,
        "places": places_source or f"{cell_m} m cells (British National Grid)",
        "count": count,
        "min_spacing_m": min_spacing_m,
    }
    if validate_from is not None:
        settings["validate_from"] = month_text(validate_from)
        settings["validate_to"] = month_text(validate_to)
    return identify(
        crimes,
        weights,
        cell_m=cell_m,
        places=places,
        count=count,
        min_spacing_m=min_spacing_m,
        validation=validation,
        settings=settings,
    )


def operation_hot_spots(session: Session, operation: Operation) -> tuple[HotSpotSet, list[str]]:
    """Return the operation's hot spots that are stored, and the ids of any that are not."""
    ids = set(
        session.scalars(
            select(OperationHotSpot.hotspot_id).where(OperationHotSpot.operation_id == operation.id)
        )
    )
    stored = stored_hot_spots(session)
    hot_spots = HotSpotSet([h for h in stored if h.id in ids])
    return hot_spots, sorted(ids - set(hot_spots.ids))


def evaluate_operation(
    session: Session,
    operation: Operation,
    weights: HarmWeights,
    today: date,
    *,
    baseline_months: int = DEFAULT_BASELINE_MONTHS,
    buffer_m: float = DEFAULT_BUFFER_M,
) -> Evaluation:
    """Evaluate the operation over the stored crimes (see tracker.harm.evaluate)."""
    periods = evaluation_periods(operation.start_date, operation.end_date, today, baseline_months)
    hot_spots, not_stored = operation_hot_spots(session, operation)
    crimes = crimes_frame(session, periods.months[0], periods.months[-1])
    stored_months = months_with_data(session)
    settings = {
        "operation": operation.name,
        "start": operation.start_date.isoformat(),
        "end": operation.end_date.isoformat(),
        "baseline_months": baseline_months,
        "buffer_m": buffer_m,
        "weights": weights.name,
        "hot_spots": len(hot_spots),
        "hot_spots_not_stored": not_stored,
        "latest_month_with_data": month_text(stored_months[-1]) if stored_months else None,
    }
    return evaluate(crimes, weights, hot_spots, periods, buffer_m=buffer_m, settings=settings)
