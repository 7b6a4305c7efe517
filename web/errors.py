"""Errors rendered once: a JSON body for the API, a page for browsers."""

from __future__ import annotations

from flask import Flask, current_app, jsonify, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from web.auth import wants_json


def _render(status: int, title: str, message: str):
    if wants_json():
        return jsonify({"error": {"status": status, "title": title, "message": message}}), status
    return render_template("error.html", status=status, title=title, message=message), status


def _http_error(error: HTTPException):
    return _render(error.code or 500, error.name, error.description or "")


def _csrf_error(error: CSRFError):
    return _render(
        400, "Form expired or forged", f"{error.description} Reload the page and try again."
    )


def _unexpected(error: Exception):
    # Never show a traceback: log it, and tell the user nothing internal.
    if isinstance(error, HTTPException):
        return _http_error(error)
    current_app.logger.exception("unhandled error", exc_info=error)
    return _render(500, InternalServerError().name, "Something went wrong; it has been logged.")


def init_app(app: Flask) -> None:
    app.register_error_handler(CSRFError, _csrf_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
