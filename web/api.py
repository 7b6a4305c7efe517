"""The JSON API for BI tools: the same figures as `tracker report`."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from tracker.dosage.reports import daily_report
from tracker.dosage.store import stored_hot_spots
from tracker.foundation.tables import records
from web.auth import DOSAGE_READERS, roles_required
from web.database import get_db
from web.views import period

blueprint = Blueprint("api", __name__, url_prefix="/api")


@blueprint.get("/dosage")
@roles_required(*DOSAGE_READERS)
def dosage():
    """Rows of `report --format json` (hotspot_id, date, presence, officer minutes, visits)."""
    from_day, to_day = period()
    hotspot = request.args.get("hotspot_id")
    table = daily_report(get_db(), from_day, to_day, [hotspot] if hotspot else None)
    return jsonify(records(table))


@blueprint.get("/hotspots")
@roles_required(*DOSAGE_READERS)
def hotspots():
    """The hot spot polygons as a GeoJSON FeatureCollection."""
    return jsonify(stored_hot_spots(get_db()).to_geojson())
