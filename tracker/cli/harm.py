"""The crime harm commands (docs/harm.md): `crimes import|summary`, `hotspots identify` and
`harm evaluate`."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import click
import pandas as pd

from tracker.cli.options import db_option, format_option, open_database
from tracker.foundation import settings
from tracker.foundation.clock import local_today
from tracker.foundation.tables import write_table
from tracker.harm.crimes import (
    BadCrimeRows,
    CrimeFileError,
    crime_summary,
    import_crimes,
    parse_month,
    read_crimes,
)
from tracker.harm.evaluate import DEFAULT_BASELINE_MONTHS, DEFAULT_BUFFER_M, EvaluationError
from tracker.harm.figures import evaluate_operation, identify_stored
from tracker.harm.identify import (
    DEFAULT_CELL_M,
    DEFAULT_COUNT,
    DEFAULT_MIN_SPACING_M,
    IdentificationError,
    load_places,
)
from tracker.harm.weights import WeightsError, load_weights
from tracker.plan.storage import find_operation
from tracker.plan.targets import PlanError


class Month(click.ParamType):
    """A YYYY-MM month between 1970 and 2099 (its first day)."""

    name = "YYYY-MM"

    def convert(self, value, param, ctx) -> date:
        if isinstance(value, date):
            return value
        try:
            return parse_month(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


weights_option = click.option(
    "--weights",
    "weights_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Harm weights YAML (default: geofences/harm_weights_police_uk.yaml, approximate).",
)


def _weights(path: str | None):
    try:
        return load_weights(path)
    except WeightsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def crimes() -> None:
    """Recorded crime: police.uk street-level CSVs and force exports."""


@crimes.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Import a file's valid rows even if some are bad (default: all or nothing per file).",
)
@db_option
def crimes_import(paths, skip_invalid, db_url) -> None:
    """Import crime CSVs: police.uk street-level files as published, or a force export
    (Reference, Date, Offence code, Crime type, ...). Importing a file again adds nothing.
    Each file is imported on its own; the exit code is 1 if any file was not."""
    factory = open_database(db_url)
    failed = 0
    for path in paths:
        try:
            records, bad_rows = read_crimes(path)
        except CrimeFileError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed += 1
            continue
        for bad in bad_rows:
            click.echo(f"{path}: {bad}", err=True)
        try:
            with factory.begin() as session:
                report = import_crimes(
                    session,
                    records,
                    actor="cli",
                    source=path,
                    bad_rows=bad_rows,
                    skip_invalid=skip_invalid,
                )
        except BadCrimeRows as exc:
            click.echo(
                f"Error: {path}: {len(exc.bad_rows)} of {exc.read} rows are bad; nothing "
                "imported (use --skip-invalid to import the valid rows)",
                err=True,
            )
            failed += 1
            continue
        click.echo(report.line())
    if failed:
        raise SystemExit(1)


@crimes.command("summary")
@click.option("--from", "from_month", type=Month(), default=None, help="First month (YYYY-MM).")
@click.option("--to", "to_month", type=Month(), default=None, help="Last month (YYYY-MM).")
@weights_option
@db_option
@format_option
def crimes_summary(from_month, to_month, weights_path, db_url, fmt) -> None:
    """Crimes and harm (days) per month and crime type; `unlocated` counts those without
    a location."""
    weights = _weights(weights_path)
    with open_database(db_url)() as session:
        table = crime_summary(session, weights, from_month, to_month)
    write_table(table, fmt, sys.stdout)


@click.group()
def hotspots() -> None:
    """Choosing hot spots by crime harm."""


@hotspots.command("identify")
@click.option("--from", "from_month", type=Month(), required=True, help="First month (YYYY-MM).")
@click.option("--to", "to_month", type=Month(), required=True, help="Last month (YYYY-MM).")
@weights_option
@click.option(
    "--cell-m",
    type=click.IntRange(10, 5000),
    default=DEFAULT_CELL_M,
    show_default=True,
    help="Side of the square cells, metres, on the British National Grid.",
)
@click.option(
    "--places",
    "places_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="GeoJSON of candidate places (polygons) instead of grid cells.",
)
@click.option("--count", type=click.IntRange(1, 1000), default=DEFAULT_COUNT, show_default=True)
@click.option(
    "--min-spacing-m",
    type=click.FloatRange(0, 100_000),
    default=DEFAULT_MIN_SPACING_M,
    show_default=True,
    help="Chosen places' centres are at least this far apart.",
)
@click.option("--validate-from", type=Month(), default=None, help="First month of a later period.")
@click.option("--validate-to", type=Month(), default=None, help="Last month of that period.")
@click.option(
    "--out",
    "out_path",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="Where to write the chosen places (GeoJSON, for `tracker geofences load`).",
)
@db_option
@format_option
def hotspots_identify(
    from_month,
    to_month,
    weights_path,
    cell_m,
    places_path,
    count,
    min_spacing_m,
    validate_from,
    validate_to,
    out_path,
    db_url,
    fmt,
) -> None:
    """Rank places by the harm of the crimes in them and choose the top ones, spaced apart;
    write them as hot spots and print what they capture (docs/harm.md)."""
    weights = _weights(weights_path)
    try:
        places = load_places(places_path) if places_path else None
        with open_database(db_url)() as session:
            result = identify_stored(
                session,
                weights,
                from_month,
                to_month,
                cell_m=cell_m,
                places=places,
                count=count,
                min_spacing_m=min_spacing_m,
                validate_from=validate_from,
                validate_to=validate_to,
                places_source=places_path,
            )
    except IdentificationError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        Path(out_path).write_text(json.dumps(result.to_geojson(), indent=1) + "\n", "utf-8")
    except OSError as exc:
        raise click.ClickException(f"cannot write {out_path}: {exc}") from exc
    summary = {**result.summary(), "out": out_path}
    if fmt == "json":
        summary["chosen"] = json.loads(result.places_table().to_json(orient="records"))
        click.echo(json.dumps(summary))
        return
    flat = {k: v for k, v in summary.items() if not isinstance(v, dict)}
    flat["unweighted_types"] = "; ".join(
        f"{name} ({n})" for name, n in summary["unweighted_types"].items()
    )
    for key, value in summary.get("validation", {}).items():
        flat[f"validation_{key}"] = value
    write_table(pd.DataFrame(list(flat.items()), columns=["measure", "value"]), fmt, sys.stdout)


@click.group()
def harm() -> None:
    """Judging an operation by crime harm."""


@harm.command("evaluate")
@click.option("--operation", default=None, help="The operation (default: the current one).")
@click.option(
    "--baseline-months",
    type=click.IntRange(1, 120),
    default=DEFAULT_BASELINE_MONTHS,
    show_default=True,
    help="Months before the operation to compare with.",
)
@click.option(
    "--buffer-m",
    type=click.FloatRange(0, 5000),
    default=DEFAULT_BUFFER_M,
    show_default=True,
    help="Width of the ring around the hot spots (displacement, diffusion of benefit).",
)
@weights_option
@click.option(
    "--table",
    type=click.Choice(["summary", "months", "hotspots"]),
    default="summary",
    show_default=True,
    help="With --format csv: which table to print (JSON holds them all).",
)
@db_option
@format_option
def harm_evaluate(operation, baseline_months, buffer_m, weights_path, table, db_url, fmt) -> None:
    """Harm per month in the operation's hot spots, a buffer ring and the rest of the
    area, before and during the operation; the relative effect with a 95% interval and
    the weighted displacement quotient (docs/harm.md)."""
    weights = _weights(weights_path)
    with open_database(db_url)() as session:
        try:
            found = find_operation(session, operation)
            result = evaluate_operation(
                session,
                found,
                weights,
                local_today(settings.get("TRACKER_TZ")),
                baseline_months=baseline_months,
                buffer_m=buffer_m,
            )
        except (PlanError, EvaluationError) as exc:
            raise click.ClickException(str(exc)) from exc
    if fmt == "json":
        click.echo(json.dumps(result.to_json()))
    elif table == "months":
        write_table(result.months, fmt, sys.stdout)
    elif table == "hotspots":
        write_table(result.hot_spots, fmt, sys.stdout)
    else:
        write_table(result.summary_table(), fmt, sys.stdout)
