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
import shapely
from branca.element import MacroElement
from folium.template import Template
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
    links: Mapping[str, str] | None = None,
    labelled: bool = False,
) -> None:
    """Draw hot spot polygons coloured by status, with tooltips.

    Only the id and the tooltip fields reach the page, each as `map_text`: folium's
    GeoJSON tooltip sets them as HTML. With `labelled`, each polygon carries its id as a
    label (also `map_text`) at a point inside it; with `links` (hot spot id -> a path on
    this site), clicking a polygon opens that page.
    """
    fields = list(tooltip_fields)
    shown = []
    for feature in features:
        properties = feature["properties"]
        colour = RAG_COLOURS.get(colour_of.get(properties["id"], "none"), RAG_COLOURS["none"])
        shown_properties = {key: _shown_value(properties.get(key)) for key in ["id", *fields]}
        # Given no style function, folium styles each feature by its properties.style.
        shown_properties["style"] = {
            "color": colour,
            "fillColor": colour,
            "weight": 2,
            "fillOpacity": 0.45,
        }
        if labelled:
            inside = shapely.geometry.shape(feature["geometry"]).representative_point()
            shown_properties["label"] = map_text(properties["id"])
            shown_properties["label_at"] = list(latlon(inside.x, inside.y))
        if links and properties["id"] in links:
            shown_properties["href"] = _site_path(links[properties["id"]])
        shown.append(
            {"type": "Feature", "geometry": feature["geometry"], "properties": shown_properties}
        )
    layer = folium.GeoJson(
        {"type": "FeatureCollection", "features": shown},
        name="hot spots",
        tooltip=folium.GeoJsonTooltip(
            fields=fields, aliases=[map_text(alias) for alias in aliases], sticky=True
        ),
    )
    if labelled or links:
        _HotSpotLabelsAndLinks().add_to(layer)
    layer.add_to(fmap)


class _HotSpotLabelsAndLinks(MacroElement):
    """The script that labels each polygon of its GeoJSON layer with `properties.label` (a
    `map_text`), hides labels that would overlap one already shown (they come back on
    zooming in), thickens outlines while polygons are a few pixels across (so each can be
    seen and clicked at the opening zoom), and opens `properties.href` on a click."""

    _template = Template(
        """
        {% macro script(this, kwargs) %}
        (function (layer, map) {
            var labels = [];
            layer.eachLayer(function (polygon) {
                var properties = polygon.feature.properties;
                if (properties.label !== undefined) {
                    labels.push(L.marker(properties.label_at, {
                        icon: L.divIcon({className: "hot-spot-label", iconSize: [0, 0],
                                         html: "<span>" + properties.label + "</span>"}),
                        interactive: false, keyboard: false
                    }).addTo(map));
                }
                if (properties.href) {
                    polygon.on("click", function () { window.location.assign(properties.href); });
                }
            });
            function fit() {
                var weight = map.getZoom() < 13 ? 8 : 2;
                layer.eachLayer(function (polygon) { polygon.setStyle({weight: weight}); });
                var placed = [];
                labels.forEach(function (label) {
                    var box = label.getElement().firstChild.getBoundingClientRect();
                    var clear = placed.every(function (other) {
                        return box.right < other.left || box.left > other.right
                            || box.bottom < other.top || box.top > other.bottom;
                    });
                    label.getElement().style.visibility = clear ? "" : "hidden";
                    if (clear) placed.push(box);
                });
            }
            map.on("zoomend", fit);
            fit();
        })({{ this._parent.get_name() }}, {{ this._parent._parent.get_name() }});
        {% endmacro %}
        """
    )


def _site_path(href: str) -> str:
    """Return a link target only if it is a path on this site (a map never links away)."""
    if not href.startswith("/") or href.startswith("//") or "\\" in href:
        raise ValueError(f"not a path on this site: {href!r}")
    return href


def add_track(
    fmap: folium.Map, positions: Sequence[tuple[float, float]], labels: Sequence[str]
) -> None:
    """Draw one device's pings ((lon, lat) pairs) as a line with small markers."""
    points = [latlon(lon, lat) for lon, lat in positions]
    if len(points) >= 2:
        folium.PolyLine(points, color="#0969da", weight=2, opacity=0.8).add_to(fmap)
    for point, label in zip(points, labels, strict=True):
        folium.CircleMarker(
            point, radius=2, color="#0969da", fill=True, tooltip=_tooltip(label)
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
            tooltip=_tooltip(label),
        ).add_to(fmap)


_TEMPLATE_LITERAL_ESCAPES = {ord("`"): "&#96;", ord("$"): "&#36;", ord("\\"): "&#92;"}


def map_text(text: object) -> str:
    """Return text as HTML that shows exactly that text: every text on a map goes through here.

    folium puts tooltips (and popups) on the page as HTML: a GeoJSON tooltip's fields through
    `innerHTML`, a marker's tooltip pasted into a JavaScript template literal. So the text is
    escaped for both, and a name such as `<meta http-equiv="refresh" ...>` is shown, not obeyed.
    """
    return html.escape(str(text)).translate(_TEMPLATE_LITERAL_ESCAPES)


def _shown_value(value: object) -> str | None:
    """Return a GeoJSON tooltip field as `map_text` (a null stays null: folium shows it as
    nothing)."""
    return None if value is None else map_text(value)


def _tooltip(label: str) -> folium.Tooltip:
    """Return a marker's tooltip showing `label` as text."""
    return folium.Tooltip(map_text(label))


def render(fmap: folium.Map, nonce: str) -> RenderedMap:
    """Split a folium map into head, body and script, with our CSP nonce on every script."""
    figure = fmap.get_root()
    figure.render()
    head = _SCRIPT_TAG.sub(f'<script nonce="{nonce}"', figure.header.render())
    body = figure.html.render()
    script = f'<script nonce="{nonce}">{figure.script.render()}</script>'
    return RenderedMap(Markup(head), Markup(body), Markup(script))  # noqa: S704 (folium output)
