"""Passwords that are easy to guess are refused, and user names are unique whatever their
case (security review, issue 15, item 14)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from tracker.accounts.users import (
    UserError,
    authenticate,
    check_password,
    create_user,
    issue_token,
    revoke_token,
)
from tracker.foundation.models import User

GOOD = "correct horse battery"


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("short", "at least 12 characters"),
        ("password1234", "very common password"),
        ("qwertyuiop12", "similar to a commonly used password"),
        ("aaaaaaaaaaaa", 'Repeats like "aaa"'),
        ("supervisor12345", "too easy to guess"),  # the user name with digits
    ],
)
def test_easily_guessed_passwords_are_refused_saying_why(password, why):
    with pytest.raises(UserError, match="password") as caught:
        check_password(password, "supervisor")
    assert why in str(caught.value)


@pytest.mark.parametrize("password", [GOOD, "VnkkmRME8EkphMgj", "Tr0ub4dor&3-staple-x"])
def test_strong_passwords_are_accepted(password):
    check_password(password, "supervisor")


def test_a_name_differing_only_in_case_is_the_same_user(db):
    with db.begin() as session:
        create_user(session, "supervisor", "supervisor", GOOD, actor="test")
    with db.begin() as session, pytest.raises(UserError, match="already exists"):
        create_user(session, "Supervisor", "admin", GOOD, actor="test")
    with db() as session:
        assert session.scalars(select(User.username)).all() == ["supervisor"]
        assert authenticate(session, "SUPERVISOR", GOOD).username == "supervisor"
        assert authenticate(session, "SUPERVISOR", "wrong password here") is None


def test_tokens_find_their_user_whatever_the_case(db):
    with db.begin() as session:
        create_user(session, "analyst", "supervisor", GOOD, actor="test")
        assert issue_token(session, "Analyst", "bi", actor="test").startswith("hsd_")
    with db.begin() as session:
        assert revoke_token(session, "ANALYST", "bi", actor="test") == 1
        assert revoke_token(session, "nobody", "bi", actor="test") == 0


def test_names_stored_before_apart_by_case_each_sign_in_by_their_exact_name(db):
    # Created before names were unique regardless of case: an exact match still works, an
    # ambiguous one signs in nobody.
    with db.begin() as session:
        create_user(session, "sam", "supervisor", GOOD, actor="test")
        session.add(User(username="Sam", role="admin", password_hash="x"))
    with db() as session:
        assert authenticate(session, "sam", GOOD).role == "supervisor"
        assert authenticate(session, "SAM", GOOD) is None
