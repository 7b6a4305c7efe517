"""Sessions, tokens and the audit of signing in and out (security review, issue 15: items 5,
7, 8 and 13). Each test failed before its fix."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.web import test_web
from tests.web.test_web import (
    CSRF_INPUT,
    bearer,
    csrf_token,
    is_signed_in,
    make_app,
    post_login,
    sign_in,
)
from tracker.foundation.models import AuditEvent, User

# The web tests' fixtures: the demo database, its app, sessions on it, and API tokens.
app, demo, sessions, tokens = test_web.app, test_web.demo, test_web.sessions, test_web.tokens


def audit_rows(sessions, action: str) -> list[tuple[str, str]]:
    with sessions() as session:
        return [
            (e.actor, e.subject)
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        ]


def test_a_bearer_token_works_whatever_session_cookie_comes_with_it(app, demo, tokens):
    # A browser that is signed in as someone else, or holds a stale session, may also be
    # the BI tool's host: the token alone decides who asks.
    client = sign_in(app, demo, "officer")
    response = client.get("/api/dosage", headers=bearer(tokens["supervisor"]))
    assert response.status_code == 200 and response.is_json
    stale = app.test_client()
    stale.set_cookie("session", "not-a-valid-session")
    assert stale.get("/api/dosage", headers=bearer(tokens["supervisor"])).status_code == 200


def test_an_invalid_token_is_refused_even_with_a_signed_in_session(app, demo):
    client = sign_in(app, demo, "supervisor")
    response = client.get("/api/dosage", headers=bearer("hsd_not-a-real-token"))
    assert response.status_code == 401


def test_a_bogus_bearer_header_does_not_skip_csrf_for_a_session(app, demo):
    # Signed in by the session cookie, a form post without a CSRF token is refused even
    # when the request also carries an Authorization header.
    client = sign_in(app, demo, "officer")
    response = client.post("/logout", headers=bearer("anything"))
    assert response.status_code == 400
    assert is_signed_in(client)


def test_signing_in_gives_a_new_session_and_csrf_token(app, demo):
    client = app.test_client()
    before = csrf_token(client)
    planted = client.get_cookie("session").value
    assert post_login(client, "assurance", demo.passwords["assurance"]).status_code == 302
    assert client.get_cookie("session").value != planted
    after = CSRF_INPUT.search(client.get("/assurance/stops/new").text).group(1)
    assert after != before
    # The token from before signing in is no longer accepted.
    assert client.post("/logout", data={"csrf_token": before}).status_code == 400
    assert client.post("/logout", data={"csrf_token": after}).status_code == 302


def test_failed_log_ins_lock_outs_and_log_outs_are_audited(demo, sessions):
    app = make_app(demo, LOGIN_RATE_LIMIT="2 per minute")
    failed, locked, out = (
        len(audit_rows(sessions, a)) for a in ("login failed", "login locked out", "logout")
    )
    client = app.test_client()
    assert post_login(client, "assurance", "wrong 1").status_code == 401
    assert post_login(client, "assurance", "wrong 2").status_code == 401
    assert post_login(client, "assurance", "wrong 3").status_code == 429
    assert post_login(client, "nobody\x07<b>", "wrong").status_code == 401
    assert audit_rows(sessions, "login failed")[failed:] == [
        ("(anonymous)", "assurance"),
        ("(anonymous)", "assurance"),
        ("(anonymous)", "nobody?<b>"),
    ]
    assert audit_rows(sessions, "login locked out")[locked:] == [("(anonymous)", "assurance")]
    officer = sign_in(app, demo, "officer")
    token = CSRF_INPUT.search(officer.get("/assurance/mine").text).group(1)
    assert officer.post("/logout", data={"csrf_token": token}).status_code == 302
    assert audit_rows(sessions, "logout")[out:] == [("officer", "officer")]


@pytest.mark.parametrize("path", ["/api/dosage", "/api/hotspots", "/api/stops"])
def test_a_token_request_sets_no_session_cookie(app, tokens, path):
    response = app.test_client().get(path, headers=bearer(tokens["supervisor"]))
    assert response.status_code == 200
    assert not [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]


def test_signing_out_ends_the_session_even_for_a_copied_cookie(app, demo):
    client = sign_in(app, demo, "officer")
    copy = app.test_client()
    copy.set_cookie("session", client.get_cookie("session").value)
    assert is_signed_in(copy)
    token = CSRF_INPUT.search(client.get("/assurance/mine").text).group(1)
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert not is_signed_in(copy)  # the replayed cookie no longer signs anyone in
    assert is_signed_in(sign_in(app, demo, "officer"))  # signing in again works


def test_disabling_a_user_ends_their_sessions(demo, sessions):
    app = make_app(demo)
    client = sign_in(app, demo, "assurance")
    assert is_signed_in(client)
    with sessions.begin() as session:
        session.scalars(select(User).where(User.username == "assurance")).one().active = False
    try:
        assert not is_signed_in(client)
    finally:
        with sessions.begin() as session:
            session.scalars(select(User).where(User.username == "assurance")).one().active = True
