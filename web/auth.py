"""Log-in (Flask-Login sessions or admin-issued bearer tokens), roles and rate limiting."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from tracker.accounts.audit import record
from tracker.accounts.users import (
    FULL_SCOPE,
    authenticate,
    end_web_session,
    start_web_session,
    token_user,
    web_session_user,
)
from tracker.foundation.models import ApiToken, User
from web.database import get_db

blueprint = Blueprint("auth", __name__)
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address)

SUPERVISORS = ("supervisor",)
ANONYMOUS_ACTOR = "(anonymous)"
DOSAGE_READERS = ("admin", "supervisor", "assurance")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class SignedInUser(UserMixin):
    """The user of this request, detached from the database session."""

    def __init__(
        self, user: User, token: ApiToken | None = None, web_session_id: str | None = None
    ):
        self.id = user.id
        self.username = user.username
        self.role = user.role
        self.officer_id = user.officer_id
        self.via_token = token is not None
        self.token_id = token.id if token else None
        self.token_scope = token.scope if token else None
        self.web_session_id = web_session_id

    @property
    def audit_name(self) -> str:
        """Who did it, as the audit records it: the user, and the token if one was used."""
        return f"{self.username} (token {self.token_id})" if self.via_token else self.username

    def get_id(self) -> str | None:
        # What the session cookie holds: the server-side session, valid until it ends.
        return self.web_session_id

    def has_role(self, *roles: str) -> bool:
        return self.role in roles


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


@login_manager.user_loader
def _load_user(web_session_id: str) -> SignedInUser | None:
    user = web_session_user(get_db(), web_session_id)
    return SignedInUser(user, web_session_id=web_session_id) if user is not None else None


def authenticate_bearer() -> bool:
    """Sign this request in by its bearer token, if it has one, and return whether that
    token was valid.

    A request with `Authorization: Bearer ...` is its token's alone: whatever session
    cookie comes with it is not read (a stale or foreign cookie would otherwise fail the
    session protection and refuse a valid token), and an invalid token leaves the request
    anonymous. Only a request signed in this way may skip the CSRF check.
    """
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return False
    if "_login_user" not in g:  # Flask-Login's per-request user, set here before it loads one
        db = get_db()
        found = token_user(db, header.removeprefix("Bearer ").strip())
        if found is not None:
            db.commit()  # last_used
        g._login_user = SignedInUser(*found) if found else login_manager.anonymous_user()
    return bool(getattr(g._login_user, "via_token", False))


@login_manager.unauthorized_handler
def _unauthorized():
    if wants_json():
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def wants_json() -> bool:
    """Return whether this request is an API call (JSON errors, no redirects)."""
    return request.path.startswith("/api/")


def roles_required(*roles: str) -> Callable:
    """Allow a view only to signed-in users with one of `roles` (checked on the server)."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        wrapped.allowed_roles = roles
        return wrapped

    return decorator


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an open redirect would let a phishing link borrow our log-in.
    if not target or not target.startswith("/") or target.startswith("//"):
        return url_for("dashboard.home")
    parts = urlsplit(target)
    return target if not parts.netloc and not parts.scheme else url_for("dashboard.home")


def _login_key() -> str:
    return f"{get_remote_address()}:{(request.form.get('username') or '').strip().lower()}"


def _sign_in_by_token() -> None:
    """Before any view: a bearer token decides who is asking (the CSRF check asks first),
    and a read-only token may only read."""
    if (
        authenticate_bearer()
        and current_user.token_scope != FULL_SCOPE
        and request.method not in SAFE_METHODS
    ):
        abort(403, "This API token may only read; an administrator can issue one with full rights.")


def _claimed_name() -> str:
    """The user name a log-in attempt gave, as an audit subject (bounded, printable)."""
    name = (request.form.get("username") or "").strip()
    return "".join(c if c.isprintable() else "?" for c in name[:64]) or "(none)"


def _audit_lockout(_limit) -> None:
    """Audit a log-in refused because its address and user name are rate-limited."""
    db = get_db()
    record(db, ANONYMOUS_ACTOR, "login locked out", _claimed_name())
    db.commit()


@blueprint.route("/login", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT"],
    key_func=_login_key,
    methods=["POST"],
    deduct_when=lambda response: response.status_code != 302,
    on_breach=_audit_lockout,
)
def login():
    """Show the log-in form; sign in on valid credentials (failures are rate-limited)."""
    form = LoginForm()
    if form.validate_on_submit():
        db = get_db()
        user = authenticate(db, form.username.data, form.password.data)
        if user is not None:
            record(db, user.username, "login", user.username)
            web_session_id = start_web_session(db, user)
            db.commit()
            # A new session, and with it a new CSRF token: nothing set before signing in
            # (by someone who planted the cookie) survives it.
            session.clear()
            login_user(SignedInUser(user, web_session_id=web_session_id))
            return redirect(_safe_next(request.args.get("next")))
        record(db, ANONYMOUS_ACTOR, "login failed", _claimed_name())
        db.commit()
        flash("Unknown user name or wrong password.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form), (400 if form.errors else 200)


@blueprint.post("/logout")
def logout():
    """Sign out (POST with a CSRF token, so a link elsewhere cannot sign anyone out)."""
    if current_user.is_authenticated:
        db = get_db()
        record(db, current_user.audit_name, "logout", current_user.username)
        # Ended on the server: a copied or replayed cookie signs in no one.
        end_web_session(db, current_user.web_session_id)
        db.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.before_request(_sign_in_by_token)
    login_manager.session_protection = "strong"
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
