"""A download's name is text (security finding 16): whatever a device or officer id holds,
every CSV download has one well-formed Content-Disposition header, built as Werkzeug's
send_file builds it, and no header or parameter can be injected through the name.
"""

from __future__ import annotations

import re
import unicodedata
from email.message import Message
from email.utils import collapse_rfc2231_value
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
from sqlalchemy import select
from werkzeug.http import parse_options_header

from tests.web.test_security_maps import TRACK_DEVICE, hostile_database
from tests.web.test_web_assurance import login, make_app
from tracker.foundation.database import make_engine, session_factory
from tracker.foundation.models import Device, Officer
from web.views import csv_response

WEB = Path(__file__).resolve().parents[2] / "web"

HOSTILE_NAMES = [
    'track-device:radio "7"; filename=evil.exe; x=.csv',
    "a\r\nSet-Cookie: session=stolen\r\n\r\n<html>.csv",
    "a\rb\nc\x00d\x7fe\tf\x85g\u2028h.csv",
    "évidence – ü 署 🚓.csv",
    'non-ASCII and "quotes"; é.csv',
    "..\\..\\etc/passwd.csv",
    "report\u202egpj.exe.csv",  # a right-to-left override that would disguise the extension
    "percent %41 and 'apostrophe' and `backtick`.csv",
    "plain-name_2026-01-01.csv",
]


def expected_name(filename: str) -> str:
    """The name a client should be offered: each control or format character, line or
    paragraph separator, and path separator becomes "_"; nothing else changes."""
    return "".join("_" if c in "/\\" or _unprintable(c) else c for c in filename)


def _unprintable(c: str) -> bool:
    return unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")


# attachment; filename=<token or quoted-string>[; filename*=<RFC 5987 ext-value>]
WELL_FORMED = re.compile(r'attachment; filename=("([^"\\]|\\.)*"|[^";\s]+)(; filename\*=\S+)?')


def offered_name(headers) -> str:
    """Check that the headers carry one well-formed Content-Disposition; return its name."""
    values = headers.getlist("Content-Disposition")
    assert len(values) == 1, values
    [value] = values
    assert value.isascii() and value.isprintable(), value  # no CR, LF or other control
    assert [name for name, _ in headers].count("Content-Disposition") == 1
    assert "Set-Cookie" not in headers

    # Werkzeug's parser, and the standard library's as a second opinion.
    kind, options = parse_options_header(value)
    assert kind == "attachment"
    assert set(options) == {"filename"}, options  # filename* is folded into filename
    message = Message()
    message["Content-Disposition"] = value
    params = message.get_params(header="content-disposition")
    assert params[0] == ("attachment", "")
    names = [name for name, _ in params[1:]]
    assert names in (["filename"], ["filename", "filename"]), params  # filename (+ filename*)
    fallback = params[1][1]
    assert isinstance(fallback, str) and fallback.isascii() and fallback.isprintable()
    assert re.fullmatch(
        r'attachment; filename=("([^"\\]|\\.)*"|[^";\s]+)(; filename\*=\S+)?', value
    )
    if len(params) == 3:
        assert isinstance(params[2][1], tuple) and params[2][1][0] == "UTF-8"
        assert collapse_rfc2231_value(params[2][1]) == options["filename"]
    else:
        assert fallback == options["filename"]
    return options["filename"]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return make_app(hostile_database(tmp_path_factory.mktemp("hostile-downloads")).url)


@pytest.mark.parametrize("filename", HOSTILE_NAMES)
def test_csv_response_offers_the_name_in_one_well_formed_header(app, filename):
    with app.test_request_context():
        response = csv_response(pd.DataFrame({"a": [1, 2]}), filename)
    assert response.mimetype == "text/csv"
    assert response.get_data(as_text=True).splitlines() == ["a", "1", "2"]
    assert offered_name(response.headers) == expected_name(filename)
    if filename.isascii() and '"' not in filename:  # a plain name needs no filename*
        assert "filename*" not in response.headers["Content-Disposition"]


CRLF_DEVICE = 'dev"; filename=evil.exe\r\nSet-Cookie: session=stolen\r\nX: é'
CRLF_OFFICER = 'PC "1";\r\nRefresh: 0;url=https://example.org 署'


def test_track_downloads_named_by_hostile_device_and_officer_ids(app):
    """The track download's name holds the device or officer id, as stored: one that came
    in through MQTT (quotes, a semicolon, markup, non-ASCII), and one stored with CR/LF."""
    engine = make_engine(app.config["DATABASE_URL"])
    with session_factory(engine).begin() as session:
        if session.scalar(select(Device).where(Device.id == CRLF_DEVICE)) is None:
            session.add(Device(id=CRLF_DEVICE, label="hostile"))
            session.add(Officer(id=CRLF_OFFICER, name="hostile"))
    engine.dispose()
    client = login(app, "supervisor")
    for argument, subject in (
        ("device", f"device:{TRACK_DEVICE}"),
        ("device", f"device:{CRLF_DEVICE}"),
        ("officer", f"officer:{CRLF_OFFICER}"),
    ):
        identifier = subject.split(":", 1)[1]
        response = client.get(f"/tracks?{argument}={quote(identifier)}&date=2026-06-01&format=csv")
        assert response.status_code == 200, response.text
        assert response.mimetype == "text/csv"
        name = offered_name(response.headers)
        assert name == expected_name(f"track-{subject}-2026-06-01.csv")
        assert "\r" not in name and "\n" not in name


def test_every_download_is_built_by_csv_response():
    """No other place in the web app names a download or sets Content-Disposition."""
    for path in sorted(WEB.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "views.py":
            assert "Content-Disposition" not in text, path
            assert "download_name" not in text and "send_file(" not in text, path
