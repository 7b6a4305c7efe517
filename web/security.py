"""Security headers with a per-request script nonce, and CSRF on every form."""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, g, request
from flask_wtf.csrf import CSRFProtect

from web.auth import authenticate_bearer

csrf = CSRFProtect()


def script_nonce() -> str:
    """Return this request's CSP nonce (templates put it on every inline script)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return g.csp_nonce


def _content_security_policy() -> str:
    tiles = current_app.config.get("MAP_TILES") or ""
    tile_origin = ""
    if tiles:
        parts = urlsplit(tiles.replace("{s}", "a"))
        tile_origin = f" {parts.scheme}://{parts.netloc.replace('a.', '*.', 1)}"
    return (
        "default-src 'self'; "
        f"script-src 'self' 'nonce-{script_nonce()}'; "
        "style-src 'self' 'unsafe-inline'; "  # Leaflet sets inline styles on map elements
        f"img-src 'self' data:{tile_origin}; "
        "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


def _headers(response):
    response.headers.setdefault("Content-Security-Policy", _content_security_policy())
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Permissions-Policy"] = "geolocation=(), camera=(), microphone=()"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if (
        request.endpoint
        and request.endpoint != "static"
        and not request.path.startswith("/vendor/")
    ):
        # Officers' movements and stop records must not linger in shared caches.
        response.headers["Cache-Control"] = "no-store"
    if current_app.config["PRODUCTION"]:
        response.headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"
    return response


def _check_csrf() -> None:
    # A request signed in by a valid bearer token carries no session that a forged
    # cross-site request could ride on; any other request, whatever its headers, is checked.
    if authenticate_bearer():
        return
    csrf.protect()


def _refuse_nul() -> None:
    """Refuse a NUL character anywhere in the path, query or form: no user types one, and
    PostgreSQL cannot compare or store text holding it (a 500 otherwise, before any view
    could say what is wrong)."""
    if request.routing_exception is not None:
        return  # no such page: its plain 404 says enough
    parts = [request.path, *request.args.keys(), *request.args.values()]
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        parts += [*request.form.keys(), *request.form.values()]
    if any("\x00" in part for part in parts):
        abort(400, "A NUL character (U+0000) is not accepted in an address or a form.")


def init_app(app: Flask) -> None:
    # First of all the checks before a view: the others may already query the database.
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_nul)
    csrf.init_app(app)
    app.before_request(_check_csrf)
    app.after_request(_headers)
    app.jinja_env.globals["script_nonce"] = script_nonce
