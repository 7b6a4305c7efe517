"""The community scrutiny pack (docs/stops.md): a reproducible random sample of one month's
reviewed encounters, for an external panel to read, with nothing that names an officer or
the person searched.

Each encounter keeps what a panel judges: the day (not the time), where (the hot spot, not
the point), the kind of search, power, object, outcome, who was searched in broad terms
(age range, gender, broad ethnic group), and the review's judgement and findings. Officer
numbers, references, body-worn video references, coordinates and times are left out.
"""

from __future__ import annotations

import io
import random
import zipfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.foundation.models import HotSpotRow
from tracker.foundation.tables import write_table
from tracker.stops.figures import stops_frame
from tracker.stops.search_figures import broad_group

OUTSIDE = "outside the hot spots"
PACK_COLUMNS = [
    "encounter",
    "date",
    "place",
    "type",
    "legislation",
    "object_of_search",
    "outcome",
    "age_range",
    "gender",
    "ethnic_group",
    "grounds_reasonable",
    "camera",
    "conduct_respectful",
    "conduct_explained",
    "conduct_de_escalated",
    "gowisely_covered",
    "grade",
    "findings",
]


@dataclass(frozen=True)
class ScrutinyPack:
    month: str
    seed: int
    reviewed: int  # reviewed encounters in the month, the sample's population
    encounters: pd.DataFrame  # PACK_COLUMNS

    def readme(self) -> str:
        """What the pack is and how it was drawn, for the panel."""
        return (
            f"Stop and search scrutiny pack, {self.month}\n\n"
            f"{len(self.encounters)} encounters drawn at random (seed {self.seed}) from the "
            f"{self.reviewed} whose body-worn video was reviewed in this month's searches. "
            "Drawing again with the same month, size and seed gives the same encounters.\n\n"
            "Left out, so that no officer or person searched can be named: officer numbers, "
            "record and video references, times of day and exact locations (each encounter "
            "is placed in its hot spot only). Findings are the reviewers' own words.\n\n"
            "Columns: " + ", ".join(PACK_COLUMNS) + ". gowisely_covered counts the eight "
            "points an officer must explain (PACE Code A, 3.8) that the footage shows covered "
            "fully.\n"
        )

    def files(self) -> dict[str, str]:
        """encounters.csv, encounters.json and README.txt, by name."""
        files = {}
        for fmt in ("csv", "json"):
            stream = io.StringIO()
            write_table(self.encounters, fmt, stream)
            files[f"encounters.{fmt}"] = stream.getvalue()
        files["README.txt"] = self.readme()
        return files

    def write(self, folder) -> list[str]:
        """Write the files into `folder`; return their names."""
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        files = self.files()
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8", newline="")
        return list(files)

    def zip_bytes(self) -> bytes:
        """The same files as one ZIP archive (the dashboard's download)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, text in self.files().items():
                archive.writestr(name, text)
        return buffer.getvalue()


def parse_month(text: str) -> date:
    """Return the first day of a YYYY-MM month, or raise ValueError naming the text."""
    try:
        first = date.fromisoformat(f"{text}-01")
    except ValueError:
        raise ValueError(f"month {text!r} is not YYYY-MM") from None
    if not 1970 <= first.year <= 2099:
        raise ValueError(f"month {text} is outside 1970-2099")
    return first


def scrutiny_pack(
    session: Session, month: str, sample: int, tz: str, seed: int = 1
) -> ScrutinyPack:
    """Draw `sample` reviewed encounters of `month` (local dates) at random, reproducibly."""
    first = parse_month(month)
    if sample < 1:
        raise ValueError("the sample must be at least 1 encounter")
    last = (pd.Timestamp(first) + pd.offsets.MonthEnd(0)).date()
    frame = stops_frame(session, tz=tz, from_day=first, to_day=last)
    reviewed = frame[frame["review_status"].eq("reviewed")].sort_values("id")
    rng = random.Random(f"{month}/{seed}")  # noqa: S311 (reproducible, not a secret)
    chosen = sorted(rng.sample(list(reviewed["id"]), min(sample, len(reviewed))))
    picked = reviewed.set_index("id").loc[chosen]
    names = dict(session.execute(select(HotSpotRow.id, HotSpotRow.name)).all())
    gowisely = [c for c in picked.columns if c.startswith("gowisely_")]
    encounters = pd.DataFrame(
        {
            "encounter": [f"{month}-{n:02d}" for n in range(1, len(picked) + 1)],
            "date": picked["stop_date"].to_numpy(),
            "place": [
                names.get(h, h) if isinstance(h, str) else OUTSIDE for h in picked["hotspot_id"]
            ],
            "type": picked["type"].to_numpy(),
            "legislation": picked["legislation"].to_numpy(),
            "object_of_search": picked["object_of_search"].to_numpy(),
            "outcome": picked["outcome"].to_numpy(),
            "age_range": picked["age_range"].to_numpy(),
            "gender": picked["gender"].to_numpy(),
            "ethnic_group": [
                broad_group(e) or "not stated" for e in picked["self_defined_ethnicity"]
            ],
            "grounds_reasonable": picked["grounds_reasonable"].to_numpy(),
            "camera": picked["camera"].to_numpy(),
            "conduct_respectful": picked["conduct_respectful"].to_numpy(),
            "conduct_explained": picked["conduct_explained"].to_numpy(),
            "conduct_de_escalated": picked["conduct_de_escalated"].to_numpy(),
            "gowisely_covered": (picked[gowisely] == "yes").sum(axis=1).astype(int).to_numpy(),
            "grade": picked["grade"].to_numpy(),
            "findings": picked["findings"].to_numpy(),
        },
        columns=PACK_COLUMNS,
    )
    return ScrutinyPack(month, seed, len(reviewed), encounters)
