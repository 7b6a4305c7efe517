"""Requests and free text within bounds (security review, issue 15, item 10): a 50 MB JSON
body took the server from 246 to 624 MB, and a 10 MB `grounds` was stored and echoed back in
an error."""

from __future__ import annotations

import json

from tests.web import test_web_assurance
from tests.web.test_web_assurance import csrf_token, login, make_app

# The assurance tests' fixtures: a fresh copy of the seeded database for each test.
database_url, templates = test_web_assurance.database_url, test_web_assurance.templates


def post_stop(client, body: str):
    return client.post(
        "/api/stops",
        data=body,
        content_type="application/json",
        headers={"X-CSRFToken": csrf_token(client.get("/login").text)},
    )


def stop(**fields) -> dict:
    return {
        "type": "Person search",
        "occurred_at": "2019-06-01T12:00:00Z",
        "object_of_search": "Controlled drugs",
        "outcome": "Arrest",
        **fields,
    }


def test_a_body_over_2_mb_is_refused_before_it_is_read(database_url):
    client = login(make_app(database_url), "assurance")
    response = post_stop(client, json.dumps(stop(grounds="x" * (3 * 1024 * 1024))))
    assert response.status_code == 413
    assert response.json["error"]["status"] == 413


def test_free_text_is_bounded_and_not_echoed_back(database_url):
    client = login(make_app(database_url), "assurance")
    grounds = "Smelt cannabis. " * 300  # 4,800 characters
    response = post_stop(client, json.dumps(stop(grounds=grounds)))
    assert response.status_code == 400
    assert "longer than 4,000" in response.json["error"]["fields"]["grounds"]
    assert grounds not in response.text
    ok = post_stop(client, json.dumps(stop(grounds=grounds[:3999])))
    assert ok.status_code == 201, ok.text
