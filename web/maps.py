"""folium maps rendered into our pages, with Leaflet served locally and no tiles by default.

GeoJSON and shapely are (lon, lat); folium and Leaflet are (lat, lon). `latlon` is the one
place that converts.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import folium
from markupsafe import Markup

from web.assets import LEAFLET_CSS, LEAFLET_JS

RAG_COLOURS = {
    "green": "#1a7f37",
    "amber": "#d4a72c",
    "red": "#cf222e",
    "over": "#8250df",
    "none": "#6e7781",
}
_SCRIPT_TAG = re.compile(r"<script(?=[\s>])")


def latlon(lon: float, lat: float) -> tuple[float, float]:
    """Return a GeoJSON/shapely (lon, lat) position in folium's (lat, lon) order."""
    return lat, lon


@dataclass(frozen=True)
class RenderedMap:
    """A map split for embedding: what goes in <head>, the element, and its script."""

    head: Markup
    body: Markup
    script: Markup


def new_map(bounds: Sequence[float], tiles_url: str = "") -> folium.Map:
    """Return an empty map fitted to (min_lon, min_lat, max_lon, max_lat)."""
    fmap = folium.Map(tiles=None, control_scale=True, prefer_canvas=True, zoom_control=True)
    # folium links Leaflet, jQuery and Bootstrap on CDNs by default; we need only Leaflet,
    # served from the XStatic-Leaflet package.
    fmap.default_js = [("leaflet", LEAFLET_JS)]
    fmap.default_css = [("leaflet_css", LEAFLET_CSS)]
    if tiles_url:
        folium.TileLayer(
            tiles=tiles_url, attr="Map tiles (configured by TRACKER_MAP_TILES)", name="tiles"
        ).add_to(fmap)
    min_lon, min_lat, max_lon, max_lat = bounds
    fmap.fit_bounds([latlon(min_lon, min_lat), latlon(max_lon, max_lat)])
    return fmap


def add_hot_spots(
    fmap: folium.Map,
    features: Iterable[Mapping],
    colour_of: Mapping[str, str],
    tooltip_fields: Sequence[str],
    aliases: Sequence[str],
    link_prefix: str = "",
) -> None:
    """Draw hot spot polygons coloured by status, with tooltips (and optional links)."""
    collection = {"type": "FeatureCollection", "features": list(features)}

    def style(feature):
        colour = RAG_COLOURS.get(
            colour_of.get(feature["properties"]["id"], "none"), RAG_COLOURS["none"]
        )
        return {"color": colour, "fillColor": colour, "weight": 2, "fillOpacity": 0.45}

    layer = folium.GeoJson(
        collection,
        name="hot spots",
        style_function=style,
        tooltip=folium.GeoJsonTooltip(
            fields=list(tooltip_fields), aliases=list(aliases), sticky=True
        ),
    )
    layer.add_to(fmap)


def add_track(
    fmap: folium.Map, positions: Sequence[tuple[float, float]], labels: Sequence[str]
) -> None:
    """Draw one device's pings ((lon, lat) pairs) as a line with small markers."""
    points = [latlon(lon, lat) for lon, lat in positions]
    if len(points) >= 2:
        folium.PolyLine(points, color="#0969da", weight=2, opacity=0.8).add_to(fmap)
    for point, label in zip(points, labels, strict=True):
        folium.CircleMarker(
            point, radius=2, color="#0969da", fill=True, tooltip=tooltip_text(label)
        ).add_to(fmap)


def add_points(
    fmap: folium.Map, points: Sequence[tuple[float, float]], labels: Sequence[str], colour: str
) -> None:
    """Draw points ((lon, lat) pairs, e.g. stops and searches) as circle markers of one colour."""
    for (lon, lat), label in zip(points, labels, strict=True):
        folium.CircleMarker(
            latlon(lon, lat),
            radius=5,
            color=colour,
            weight=1,
            fill=True,
            fill_color=colour,
            fill_opacity=0.8,
            tooltip=tooltip_text(label),
        ).add_to(fmap)


_TEMPLATE_LITERAL_ESCAPES = {ord("`"): "&#96;", ord("$"): "&#36;", ord("\\"): "&#92;"}


def tooltip_text(label: str) -> str:
    """Return plain text safe as a folium tooltip.

    folium pastes a tooltip into a JavaScript template literal as HTML, so the text is
    escaped for both.
    """
    return html.escape(label).translate(_TEMPLATE_LITERAL_ESCAPES)


def render(fmap: folium.Map, nonce: str) -> RenderedMap:
    """Split a folium map into head, body and script, with our CSP nonce on every script."""
    figure = fmap.get_root()
    figure.render()
    head = _SCRIPT_TAG.sub(f'<script nonce="{nonce}"', figure.header.render())
    body = figure.html.render()
    script = f'<script nonce="{nonce}">{figure.script.render()}</script>'
    return RenderedMap(Markup(head), Markup(body), Markup(script))  # noqa: S704 (folium output)
