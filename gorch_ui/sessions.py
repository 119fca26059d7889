"""Signed sign-in sessions and the lock-out after wrong passwords (no Streamlit here).

A session is a token the browser keeps in a cookie (``gorch_ui.auth`` writes and reads it):

    v1.<payload>.<signature>

``payload`` is base64url JSON (session id, name, role, how the person signed in, issued and
expiry times); ``signature`` is an HMAC-SHA256 of ``v1.<payload>`` under a key derived from
the server's secret *and* the sign-in settings (mode and passwords), so a token is refused if
it was altered, forged without the secret, expired, ended by signing out (its id is kept in the
database's ``revoked_sessions`` until it would have expired), or issued before the passwords
changed. The token holds no password.

The secret is ``GORCH_UI_SECRET``, else the contents of a file made on first use with mode 0600
(``secret_path``): next to a SQLite database, else under the user's config directory.

Lock-out: ``lockout_attempts`` wrong passwords for one name within ``lockout`` lock that name
until ``lockout`` after the last of them; while locked, every attempt for the name is refused,
the right password too, without being checked. Wrong passwords live in the database
(``SignInLog``), so every UI process on it agrees; refusals are logged (``gorch_ui.sessions``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine import Clock, GorchError, MemoryStore, SignInLog
from gorch_ui.access import AuthConfig, Operator, Role, password_role

logger = logging.getLogger(__name__)

COOKIE = "gorch_session"
"""The name of the cookie that holds the session token."""

SECRET_ENV = "GORCH_UI_SECRET"
SECRET_FILE_ENV = "GORCH_UI_SECRET_FILE"
MAX_NAME = 200  # characters of a name signed in with a password
MIN_SECRET = 32  # characters of GORCH_UI_SECRET (a generated one has 64 hex digits)
_VERSION = "v1"
_SKEW = timedelta(minutes=5)  # a token issued this far in the future is still taken


class SessionError(GorchError):
    """Signing in or resuming a session did not work (see the subclasses)."""


class SessionRefused(SessionError):
    """A session token was refused: malformed, forged, expired, revoked or from other settings.

    Attributes:
        reason: what was wrong, for the log (never shown with the token).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"session refused: {reason}")
        self.reason = reason


class SignInRefused(SessionError):
    """A sign-in was refused: a wrong password, no name, or a name locked out.

    Attributes:
        locked_until: when the name's lock ends (None: not locked).
        attempts_left: wrong passwords the name may still give before it is locked.
    """

    def __init__(
        self,
        message: str,
        *,
        locked_until: datetime | None = None,
        attempts_left: int | None = None,
    ) -> None:
        super().__init__(message)
        self.locked_until = locked_until
        self.attempts_left = attempts_left


class SecretError(SessionError):
    """The session secret cannot be used (too short, or its file readable by others)."""


# -- the secret -----------------------------------------------------------------------------


def secret_path(environ: Mapping[str, str], db_url: str) -> Path:
    """Where the generated secret lives: ``GORCH_UI_SECRET_FILE``; else next to a SQLite
    database file (``gorch.db`` -> ``gorch.db.ui-secret``); else
    ``$XDG_CONFIG_HOME/gorch/ui-secret`` (``~/.config/gorch/ui-secret``)."""
    if given := environ.get(SECRET_FILE_ENV):
        return Path(given).expanduser()
    sqlite = re.match(r"sqlite(\+\w+)?:///([^?]+)", db_url)
    if sqlite and sqlite[2] != ":memory:":
        path = Path(sqlite[2]).expanduser()
        return path.with_name(path.name + ".ui-secret")
    config = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "gorch" / "ui-secret"


def load_secret(environ: Mapping[str, str], db_url: str) -> bytes:
    """The server's session secret: ``GORCH_UI_SECRET``, else the secret file, made with mode
    0600 on first use (racing processes agree: the first to create it wins).

    Raises:
        SecretError: ``GORCH_UI_SECRET`` is shorter than 32 characters, or the file is empty,
            or readable or writable by its group or others.
    """
    if given := environ.get(SECRET_ENV):
        if len(given) < MIN_SECRET:
            raise SecretError(f"{SECRET_ENV} must be at least {MIN_SECRET} characters long")
        return given.encode()
    path = secret_path(environ, db_url)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        logger.info("generated the UI session secret in %s", path)
    mode = path.stat().st_mode
    if mode & 0o077:
        raise SecretError(
            f"the session secret {path} is accessible to other users "
            f"(mode {mode & 0o777:o}): chmod 600 it"
        )
    text = path.read_text().strip()
    if len(text) < MIN_SECRET:
        raise SecretError(f"the session secret {path} is shorter than {MIN_SECRET} characters")
    return text.encode()


# -- tokens ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """A signed-in person as their token says: who, as what, and until when."""

    id: str
    operator: Operator
    issued_at: datetime
    expires_at: datetime


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signing_key(secret: bytes, config: AuthConfig) -> bytes:
    """The key tokens are signed with: the secret bound to the sign-in settings, so changing
    the mode or a password ends every session issued before."""
    settings = json.dumps([config.mode, config.password, config.viewer_password])
    return hmac.new(secret, b"gorch-ui-session\0" + settings.encode(), hashlib.sha256).digest()


def issue(key: bytes, op: Operator, *, now: datetime, ttl: timedelta) -> tuple[str, Session]:
    """A new session for ``op`` from ``now`` for ``ttl``, and its token."""
    session = Session(secrets.token_urlsafe(18), op, now, now + ttl)
    payload = {
        "sid": session.id,
        "name": op.name,
        "role": op.role.value,
        "via": op.via,
        "iat": int(now.timestamp()),
        "exp": int(session.expires_at.timestamp()),
    }
    body = f"{_VERSION}.{_b64(json.dumps(payload, separators=(',', ':')).encode())}"
    signature = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(signature)}", session


def verify(key: bytes, token: str, *, now: datetime) -> Session:
    """The session a token holds, if it is intact, signed with ``key`` and not expired.

    Raises:
        SessionRefused: malformed, a bad signature, expired, or issued in the future.
    """
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise SessionRefused("malformed token")
    body = f"{parts[0]}.{parts[1]}"
    try:
        signature = _unb64(parts[2])
    except ValueError:
        raise SessionRefused("malformed signature") from None
    if not hmac.compare_digest(hmac.new(key, body.encode(), hashlib.sha256).digest(), signature):
        raise SessionRefused("bad signature")
    try:  # signed by us, so well formed unless the format changed under the same version
        data = json.loads(_unb64(parts[1]))
        op = Operator(str(data["name"]), Role(data["role"]), str(data["via"]))
        issued = datetime.fromtimestamp(int(data["iat"]), UTC)
        expires = datetime.fromtimestamp(int(data["exp"]), UTC)
        sid = str(data["sid"])
    except (ValueError, KeyError, TypeError):
        raise SessionRefused("malformed payload") from None
    if expires <= now:
        raise SessionRefused(f"expired at {expires:%Y-%m-%d %H:%M:%S} UTC")
    if issued > now + _SKEW:
        raise SessionRefused("issued in the future")
    return Session(sid, op, issued, expires)


# -- sessions and sign-in -------------------------------------------------------------------


def name_key(name: str) -> str:
    """The name a lock-out is kept under: trimmed and case-folded (``Ann`` is ``ann``)."""
    return " ".join(name.split()).casefold()


def lock_end(failures: list[datetime], *, limit: int, window: timedelta) -> datetime | None:
    """When a name given these wrong passwords (oldest first) is unlocked: ``window`` after
    the last of any ``limit`` of them that fall within ``window``; None if none do."""
    end: datetime | None = None
    for i in range(limit - 1, len(failures)):
        if failures[i] - failures[i - limit + 1] < window:
            end = max(end or failures[i], failures[i] + window)
    return end


@functools.cache
def _process_log() -> SignInLog:
    """This process's sign-in log, for a store that keeps none (one for the process, so that
    a lock-out outlives the ``SignIn`` made for each page run)."""
    return MemoryStore()


class SignIn:
    """Sessions and sign-ins against one secret, sign-in settings, log and clock.

    Args:
        config: the sign-in settings (mode, passwords, session length, lock-out).
        secret: the server's secret (``load_secret``).
        log: where wrong passwords and ended sessions are kept: the engine's store when it is
            a ``SignInLog`` (both of gorch's are), else this process's memory.
        clock: the time tokens and locks go by.
    """

    def __init__(self, config: AuthConfig, secret: bytes, log: object, clock: Clock) -> None:
        self.config = config
        self.key = signing_key(secret, config)
        self.log: SignInLog = log if isinstance(log, SignInLog) else _process_log()
        self.clock = clock

    # sessions

    def start(self, op: Operator) -> tuple[str, Session]:
        """A new signed session for ``op``: its token (the cookie) and what it holds."""
        return issue(self.key, op, now=self.clock.now(), ttl=self.config.session_ttl)

    def resume(self, token: str) -> Session:
        """The session of a token, if valid now and not ended.

        Raises:
            SessionRefused: forged, expired, revoked, or from another sign-in mode.
        """
        try:
            session = verify(self.key, token, now=self.clock.now())
            if session.operator.via != self.config.mode:
                raise SessionRefused(f"issued for sign-in mode {session.operator.via!r}")
            if self.log.session_revoked(session.id):
                raise SessionRefused("ended by signing out")
        except SessionRefused as e:
            logger.warning("refused a session token: %s", e.reason)
            raise
        return session

    def end(self, session: Session) -> None:
        """End a session for good: its token is refused from now on, wherever it is sent."""
        self.log.revoke_session(session.id, expires_at=session.expires_at, now=self.clock.now())
        logger.info("session of %r ended by signing out", session.operator.name)

    # passwords

    def locked_until(self, name: str) -> datetime | None:
        """When ``name``'s lock-out ends, if it is locked now."""
        cfg, now = self.config, self.clock.now()
        since = now - 2 * cfg.lockout
        end = lock_end(
            self.log.sign_in_failures(name_key(name), since=since),
            limit=cfg.lockout_attempts,
            window=cfg.lockout,
        )
        return end if end is not None and end > now else None

    def password(self, name: str, given: str) -> Operator:
        """Sign ``name`` in with a password; the role is the password's.

        Raises:
            SignInRefused: no name, the name is locked out (checked before the password),
                or a wrong password (recorded: the ``lockout_attempts``-th locks the name).
        """
        name = name.strip()
        if not name:
            raise SignInRefused("Enter your name: every action is recorded under it.")
        if len(name) > MAX_NAME:  # the session must fit in a cookie (4 KB)
            raise SignInRefused(f"A name is at most {MAX_NAME} characters long.")
        cfg, key = self.config, name_key(name)
        until = self.locked_until(name)
        if until is not None:
            logger.warning("sign-in refused for %r: locked out until %s", name, until.isoformat())
            raise SignInRefused(
                f"Too many wrong passwords for this name: sign-in is refused until "
                f"{until:%H:%M:%S} UTC.",
                locked_until=until,
            )
        role = password_role(cfg, given)
        if role is not None:
            self.log.clear_sign_in_failures(key)
            logger.info("%r signed in as %s", name, role.value)
            return Operator(name, role, "password")
        now = self.clock.now()
        self.log.add_sign_in_failure(key, at=now, forget_before=now - 2 * cfg.lockout)
        until = self.locked_until(name)
        recent = len(self.log.sign_in_failures(key, since=now - cfg.lockout))
        left = max(cfg.lockout_attempts - recent, 0)
        logger.warning("sign-in refused for %r: wrong password (%d recent)", name, recent)
        if until is not None:
            raise SignInRefused(
                f"Wrong password. Too many wrong passwords for this name: sign-in is refused "
                f"until {until:%H:%M:%S} UTC.",
                locked_until=until,
                attempts_left=0,
            )
        more = f"{left} more attempt{'s' if left != 1 else ''}"
        raise SignInRefused(
            f"Wrong password. {more} before this name is locked for {_minutes(cfg.lockout)}.",
            attempts_left=left,
        )


def _minutes(d: timedelta) -> str:
    m = round(d.total_seconds() / 60)
    return f"{m} minute{'s' if m != 1 else ''}"
