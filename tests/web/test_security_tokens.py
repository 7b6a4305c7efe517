"""API tokens (security review, issue 15, item 9): a scope (read-only figures or the role's
full rights), an optional expiry, the last use shown, revocation from the admin pages, and
the token named in the audit rows of what it did."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from tests.web import test_web
from tests.web.test_web import bearer, csrf_token, sign_in
from tracker.accounts.users import issue_token
from tracker.foundation.models import ApiToken, AuditEvent
from tracker.stops.models import StopSearch

app, demo, sessions = test_web.app, test_web.demo, test_web.sessions

A_STOP = {"type": "Person search", "occurred_at": "2024-07-01T14:30:00Z"}


def issue(sessions, username: str, name: str, **options) -> tuple[str, int]:
    with sessions.begin() as session:
        token = issue_token(session, username, name, actor="test", **options)
    with sessions() as session:
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.name == name))
    return token, token_id


def audit(sessions, action: str) -> list[AuditEvent]:
    with sessions() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
            )
        )


def stop_count(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(StopSearch))


def test_a_read_token_reads_but_changes_nothing(app, sessions):
    token, _ = issue(sessions, "assurance", "dashboard-read")
    client = app.test_client()
    assert client.get("/api/stops", headers=bearer(token)).status_code == 200
    before = stop_count(sessions)
    refused = client.post("/api/stops", headers=bearer(token), json=A_STOP)
    assert refused.status_code == 403
    assert "may only read" in refused.json["error"]["message"]
    assert stop_count(sessions) == before


def test_a_full_token_acts_with_the_role_and_the_audit_names_the_token(app, sessions):
    token, token_id = issue(sessions, "assurance", "records-sync", scope="full")
    created = app.test_client().post("/api/stops", headers=bearer(token), json=A_STOP)
    assert created.status_code == 201
    stop_id = created.json["id"]

    rows = [e for e in audit(sessions, "stop.create") if e.subject == f"stop {stop_id}"]
    assert [e.actor for e in rows] == [f"assurance (token {token_id})"]
    # Its role still bounds it: an assurance token cannot read officers' tracks.
    assert app.test_client().get("/tracks", headers=bearer(token)).status_code == 403


def test_an_expired_token_is_refused(app, sessions):
    token, token_id = issue(
        sessions, "supervisor", "short-lived", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    assert app.test_client().get("/api/dosage", headers=bearer(token)).status_code == 200
    with sessions.begin() as session:
        session.execute(
            update(ApiToken)
            .where(ApiToken.id == token_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert app.test_client().get("/api/dosage", headers=bearer(token)).status_code == 401


def tokens_page_row(client, token_id: int) -> str:
    page = client.get("/admin/tokens").text
    row = re.search(rf"<tr>\s*<td data-sort=\"{token_id}\">.*?</tr>", page, re.DOTALL)
    assert row, f"token {token_id} not on the page"
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))


def test_the_admin_page_lists_tokens_with_last_use_and_revokes_them(app, demo, sessions):
    token, token_id = issue(sessions, "supervisor", "power-bi")
    admin = sign_in(app, demo, "admin")
    assert "power-bi read" in tokens_page_row(admin, token_id)
    assert "never active" in tokens_page_row(admin, token_id)  # last used: never
    assert app.test_client().get("/api/dosage", headers=bearer(token)).status_code == 200
    row = tokens_page_row(admin, token_id)
    assert "never active" not in row and re.search(r"\d\d:\d\d:\d\d (GMT|BST)", row)
    assert token not in admin.get("/admin/tokens").text  # the token itself is never shown

    # Revoking needs the form's CSRF token, then takes effect at the next request.
    assert admin.post(f"/admin/tokens/{token_id}/revoke").status_code == 400
    revoked = admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(admin)})
    assert revoked.status_code == 302
    assert app.test_client().get("/api/dosage", headers=bearer(token)).status_code == 401
    assert tokens_page_row(admin, token_id).rstrip().endswith("revoked")
    again = admin.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(admin)})
    assert again.status_code == 404
    event = audit(sessions, "token.revoke")[-1]
    assert event.actor == "admin" and event.before == {"token": token_id, "name": "power-bi"}


def test_an_administrator_issues_a_token_shown_once(app, demo, sessions):
    admin = sign_in(app, demo, "admin")
    response = admin.post(
        "/admin/tokens",
        data={
            "csrf_token": csrf_token(admin),
            "username": "supervisor",
            "name": "tableau",
            "scope": "full",
            "days": "7",
        },
    )
    assert response.status_code == 201
    token = re.search(r'<code id="issued-token">(hsd_[\w-]+)</code>', response.text).group(1)
    assert app.test_client().get("/api/dosage", headers=bearer(token)).status_code == 200
    assert token not in admin.get("/admin/tokens").text
    with sessions() as session:
        row = session.scalar(select(ApiToken).where(ApiToken.name == "tableau"))
    assert row.scope == "full"
    assert timedelta(days=6, hours=23) < row.expires_at - datetime.now(UTC) <= timedelta(days=7)
    event = audit(sessions, "token.issue")[-1]
    assert event.actor == "admin" and event.subject == "supervisor"
    assert event.after["scope"] == "full" and token not in str(event.after)


@pytest.mark.parametrize(
    "form, message",
    [
        ({"username": "supervisor", "name": "x", "scope": "admin"}, "scope must be one of"),
        ({"username": "supervisor", "name": "", "scope": "read"}, "a token name is 1-100"),
        ({"username": "supervisor", "name": "x" * 101, "scope": "read"}, "a token name is 1-100"),
        ({"username": "nobody", "name": "x", "scope": "read"}, "no user"),
        ({"username": "supervisor", "name": "x", "scope": "read", "days": "0"}, "from 1 to 3650"),
        ({"username": "supervisor", "name": "x", "scope": "read", "days": "9" * 30}, "from 1"),
    ],
)
def test_a_bad_token_request_is_refused_with_its_reason(app, demo, sessions, form, message):
    admin = sign_in(app, demo, "admin")
    before = len(audit(sessions, "token.issue"))
    response = admin.post("/admin/tokens", data={"csrf_token": csrf_token(admin), **form})
    assert response.status_code == 400
    assert message in response.text
    assert "issued-token" not in response.text
    assert len(audit(sessions, "token.issue")) == before
