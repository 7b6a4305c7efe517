"""Static files from installed packages (Leaflet from XStatic-Leaflet): no CDN, ever."""

from __future__ import annotations

import xstatic.pkg.leaflet as leaflet
from flask import Blueprint, send_from_directory

blueprint = Blueprint("vendor", __name__, url_prefix="/vendor")
LEAFLET_JS = "/vendor/leaflet/leaflet.js"
LEAFLET_CSS = "/vendor/leaflet/leaflet.css"


@blueprint.get("/leaflet/<path:filename>")
def leaflet_file(filename: str):
    """Serve Leaflet's own files (script, stylesheet, marker images)."""
    return send_from_directory(leaflet.BASE_DIR, filename, max_age=86400)
