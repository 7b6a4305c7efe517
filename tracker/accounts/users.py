"""Users, roles, passwords and API tokens (core; the web app and the command line use it)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn import zxcvbn

from tracker.accounts.audit import record
from tracker.foundation import parsing
from tracker.foundation.models import ApiToken, Officer, User, WebSession, utc_now

ROLES = ("admin", "supervisor", "assurance", "officer", "dispatch", "partner")
PARTNER = "partner"  # another agency's user: aggregate figures and its own actions only
MAX_AGENCY = 200  # the users column
MIN_PASSWORD_LENGTH = 12
MIN_PASSWORD_SCORE = 3  # zxcvbn: 3 is "safely unguessable", 0-2 fall to a guessing attack
MAX_CHECKED_PASSWORD = 100  # zxcvbn's time grows with length; longer passwords are not weak
READ_SCOPE, FULL_SCOPE = "read", "full"
SCOPES = (READ_SCOPE, FULL_SCOPE)
MAX_TOKEN_NAME = 100  # the api_tokens column
TOKEN_PREFIX = "hsd_"  # noqa: S105 (a prefix that makes leaked tokens easy to spot)
# A constant hash to compare against when the user does not exist, so that a log-in for
# an unknown name costs the same time as a wrong password.
_DUMMY_HASH = generate_password_hash("not a real password")


class UserError(ValueError):
    """A user or token operation that cannot be done, with the reason."""


def create_user(
    session: Session,
    username: str,
    role: str,
    password: str,
    officer_id: str | None = None,
    actor: str = "cli",
    agency: str | None = None,
) -> User:
    """Create a user with a hashed password (scrypt); officers must be linked to an officer,
    partners must name their agency."""
    username = username.strip()
    if (
        not username
        or len(username) > 64
        or not username.replace(".", "").replace("-", "").replace("_", "").isalnum()
    ):
        raise UserError("username must be 1-64 letters, digits, '.', '-' or '_'")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    check_password(password, username)
    existing = find_user(session, username)
    if existing is not None:
        raise UserError(f"user {existing.username!r} already exists")
    if role == "officer":
        if not officer_id:
            raise UserError("an officer user needs --officer ID (their collar or staff number)")
        if session.get(Officer, officer_id) is None:
            session.add(Officer(id=officer_id, name=username))
    agency = (agency or "").strip() or None
    if role == PARTNER and agency is None:
        raise UserError("a partner user needs --agency NAME (their organisation)")
    if agency is not None and (len(agency) > MAX_AGENCY or not agency.isprintable()):
        raise UserError(f"an agency is 1-{MAX_AGENCY} printable characters")
    user = User(
        username=username,
        role=role,
        officer_id=officer_id if role == "officer" else None,
        agency=agency if role == PARTNER else None,
        password_hash=generate_password_hash(password),
    )
    session.add(user)
    session.flush()
    after = {"role": role, "officer_id": officer_id}
    if user.agency is not None:
        after["agency"] = user.agency
    record(session, actor, "user.create", username, None, after)
    return user


def check_password(password: str, username: str = "") -> None:
    """Refuse a password shorter than MIN_PASSWORD_LENGTH or easy to guess: common, a
    keyboard or date pattern, or built on the user name (zxcvbn's estimate, from the lists
    shipped with the package)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    estimate = zxcvbn(password[:MAX_CHECKED_PASSWORD], user_inputs=[username])
    if estimate["score"] < MIN_PASSWORD_SCORE:
        why = estimate["feedback"]["warning"] or "it follows a pattern that is guessed early"
        raise UserError(f"password is too easy to guess: {why.rstrip('.')}")


def find_user(session: Session, username: str) -> User | None:
    """Return the user of this name, whatever its case (an exact match first, for names
    stored before names were made unique regardless of case)."""
    name = username.strip()
    users = session.scalars(select(User).where(func.lower(User.username) == name.lower())).all()
    exact = [u for u in users if u.username == name]
    return exact[0] if exact else users[0] if len(users) == 1 else None


def start_web_session(session: Session, user: User) -> str:
    """Record a new signed-in browser session of the user; return its id (for the cookie)."""
    web_session = WebSession(id=secrets.token_urlsafe(32), user_id=user.id)
    session.add(web_session)
    return web_session.id


def web_session_user(session: Session, web_session_id: str) -> User | None:
    """Return the active user of an open browser session, or None."""
    web_session = session.get(WebSession, web_session_id)
    if web_session is None or web_session.ended_at is not None:
        return None
    user = session.get(User, web_session.user_id)
    return user if user is not None and user.active else None


def end_web_session(session: Session, web_session_id: str) -> None:
    """End a browser session (signing out): its cookie signs in no one any more."""
    session.execute(
        update(WebSession)
        .where(WebSession.id == web_session_id, WebSession.ended_at.is_(None))
        .values(ended_at=utc_now())
    )


def authenticate(session: Session, username: str, password: str) -> User | None:
    """Return the active user with this name and password, or None."""
    user = find_user(session, username)
    if user is None or not user.active:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    user.last_login = utc_now()
    return user


def issue_token(
    session: Session,
    username: str,
    name: str,
    actor: str = "cli",
    scope: str = READ_SCOPE,
    expires_at: datetime | None = None,
) -> str:
    """Create an API token for a user and return it; only its SHA-256 is stored.

    A "read" token may only read (GET); a "full" one may do whatever the user's role may.
    """
    user = find_user(session, username)
    if user is None:
        raise UserError(f"no user {parsing.shortened(username)}")
    if scope not in SCOPES:
        raise UserError(f"scope must be one of {', '.join(SCOPES)}, not {parsing.shortened(scope)}")
    name = name.strip()
    if not name or len(name) > MAX_TOKEN_NAME or not name.isprintable():
        raise UserError(f"a token name is 1-{MAX_TOKEN_NAME} printable characters")
    if expires_at is not None and expires_at <= utc_now():
        raise UserError("a token must expire in the future")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        user_id=user.id, name=name, token_sha256=_digest(token), scope=scope, expires_at=expires_at
    )
    session.add(row)
    session.flush()  # its id names it in the audit
    after = {"token": row.id, "name": name, "scope": scope, "expires_at": _iso(expires_at)}
    record(session, actor, "token.issue", user.username, None, after)
    return token


def revoke_token(session: Session, username: str, name: str, actor: str = "cli") -> int:
    """Revoke a user's unrevoked tokens with this name; return how many."""
    user = find_user(session, username)
    tokens = session.scalars(
        select(ApiToken).where(
            ApiToken.user_id == (user.id if user else None),
            ApiToken.name == name,
            ApiToken.revoked.is_(False),
        )
    ).all()
    for token in tokens:
        _revoke(session, token, user.username, actor)
    return len(tokens)


def revoke_token_id(session: Session, token_id: int, actor: str) -> bool:
    """Revoke one token by its id; return False if there is no such unrevoked token."""
    token = session.get(ApiToken, token_id)
    if token is None or token.revoked:
        return False
    _revoke(session, token, session.get(User, token.user_id).username, actor)
    return True


def _revoke(session: Session, token: ApiToken, username: str, actor: str) -> None:
    token.revoked = True
    record(session, actor, "token.revoke", username, {"token": token.id, "name": token.name}, None)


def tokens_table(session: Session) -> list[dict]:
    """Every token (never its value): owner, name, scope, dates and state, newest first."""
    now = utc_now()
    rows = session.execute(
        select(ApiToken, User.username)
        .join(User, User.id == ApiToken.user_id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all()
    return [
        {
            "id": token.id,
            "username": username,
            "name": token.name,
            "scope": token.scope,
            "created_at": token.created_at,
            "expires_at": token.expires_at,
            "last_used": token.last_used,
            "state": token_state(token, now),
        }
        for token, username in rows
    ]


def token_state(token: ApiToken, now: datetime) -> str:
    if token.revoked:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "active"


def token_user(session: Session, token: str) -> tuple[User, ApiToken] | None:
    """Return the active user owning a token and the token, if it is neither revoked nor
    expired (and note that it was used), else None."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == _digest(token)))
    if row is None or token_state(row, utc_now()) != "active":
        return None
    user = session.get(User, row.user_id)
    if user is None or not user.active:
        return None
    row.last_used = utc_now()
    return user, row


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _digest(token: str) -> str:
    # Tokens are long and random, so a fast hash is enough (no need for a slow KDF).
    return hashlib.sha256(token.encode()).hexdigest()
