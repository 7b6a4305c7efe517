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
    redirect,
    render_template,
    request,
    url_for,
)
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager, UserMixin, current_user, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from tracker.accounts.audit import record
from tracker.accounts.users import authenticate, user_for_token
from tracker.foundation.models import User
from web.database import get_db

blueprint = Blueprint("auth", __name__)
login_manager = LoginManager()
limiter = Limiter(key_func=get_remote_address)

SUPERVISORS = ("supervisor",)
DOSAGE_READERS = ("admin", "supervisor", "assurance")


class SignedInUser(UserMixin):
    """The user of this request, detached from the database session."""

    def __init__(self, user: User, via_token: bool = False):
        self.id = user.id
        self.username = user.username
        self.role = user.role
        self.officer_id = user.officer_id
        self.via_token = via_token

    def has_role(self, *roles: str) -> bool:
        return self.role in roles


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=256)])


@login_manager.user_loader
def _load_user(user_id: str) -> SignedInUser | None:
    user = get_db().get(User, int(user_id))
    return SignedInUser(user) if user is not None and user.active else None


@login_manager.request_loader
def _load_user_from_token(req) -> SignedInUser | None:
    header = req.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    db = get_db()
    user = user_for_token(db, header.removeprefix("Bearer ").strip())
    if user is None:
        return None
    db.commit()  # last_used
    return SignedInUser(user, via_token=True)


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


@blueprint.route("/login", methods=["GET", "POST"])
@limiter.limit(
    lambda: current_app.config["LOGIN_RATE_LIMIT"],
    key_func=_login_key,
    methods=["POST"],
    deduct_when=lambda response: response.status_code != 302,
)
def login():
    """Show the log-in form; sign in on valid credentials (failures are rate-limited)."""
    form = LoginForm()
    if form.validate_on_submit():
        db = get_db()
        user = authenticate(db, form.username.data, form.password.data)
        if user is not None:
            record(db, user.username, "login", user.username)
            db.commit()
            login_user(SignedInUser(user))
            return redirect(_safe_next(request.args.get("next")))
        flash("Unknown user name or wrong password.", "error")
        return render_template("login.html", form=form), 401
    return render_template("login.html", form=form), (400 if form.errors else 200)


@blueprint.post("/logout")
def logout():
    """Sign out (POST with a CSRF token, so a link elsewhere cannot sign anyone out)."""
    logout_user()
    return redirect(url_for("auth.login"))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.session_protection = "strong"
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    limiter.init_app(app)
