"""Who uses the operator UI and what they may do: roles, operators and the sign-in settings.

No Streamlit here: ``gorch_ui.auth`` draws the sign-in, and every service checks ``actor(op)``
before it acts, so a viewer is refused on the server whatever the page shows.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

from engine import GorchError


class Role(StrEnum):
    """What a signed-in person may do."""

    OPERATOR = "operator"  # sees everything and acts
    VIEWER = "viewer"  # sees everything, changes nothing


@dataclass(frozen=True)
class Operator:
    """The person using the UI: a name for the history, a role, and how they signed in."""

    name: str
    role: Role = Role.OPERATOR
    via: str = "none"  # "none", "password" or "oidc"

    @property
    def can_act(self) -> bool:
        return self.role is Role.OPERATOR


class PermissionDenied(GorchError):
    """The operator may not do this (a viewer acting, or no name to record the action under)."""


class AuthConfigError(GorchError):
    """A sign-in setting in the environment is not a value it can take."""


@dataclass(frozen=True)
class AuthConfig:
    """How people sign in, from the environment (see ``auth_config``)."""

    mode: str  # "oidc", "password" or "none"
    password: str | None = None
    viewer_password: str | None = None
    operators: frozenset[str] = frozenset()  # OIDC: emails allowed to act (empty: everyone)
    session_ttl: timedelta = timedelta(hours=12)  # how long a signed session lasts
    lockout_attempts: int = 5  # wrong passwords for one name that lock it ...
    lockout: timedelta = timedelta(minutes=15)  # ... when within this long, for this long


def _positive(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1
    if not value > 0 or value != value or value == float("inf"):
        raise AuthConfigError(f"{name} must be a positive number, not {raw!r}")
    return value


def auth_config(environ: Mapping[str, str], *, oidc: bool) -> AuthConfig:
    """OIDC if Streamlit's ``[auth]`` secrets are set, else a password, else nothing.

    ``GORCH_UI_PASSWORD`` signs operators in, ``GORCH_UI_VIEWER_PASSWORD`` viewers;
    with OIDC, ``GORCH_UI_OPERATORS`` (comma-separated emails) limits who may act.
    ``GORCH_UI_SESSION_HOURS`` (12) is how long a sign-in lasts; ``GORCH_UI_LOCKOUT_ATTEMPTS``
    (5) wrong passwords for a name within ``GORCH_UI_LOCKOUT_MINUTES`` (15) lock it that long.

    Raises:
        AuthConfigError: one of the numbers is not a positive number.
    """
    operators = frozenset(
        e.strip().lower() for e in environ.get("GORCH_UI_OPERATORS", "").split(",") if e.strip()
    )
    attempts = _positive(environ, "GORCH_UI_LOCKOUT_ATTEMPTS", 5)
    if attempts != int(attempts):
        raise AuthConfigError(f"GORCH_UI_LOCKOUT_ATTEMPTS must be a whole number, not {attempts}")
    base = AuthConfig(
        "none",
        operators=operators,
        session_ttl=timedelta(hours=_positive(environ, "GORCH_UI_SESSION_HOURS", 12)),
        lockout_attempts=int(attempts),
        lockout=timedelta(minutes=_positive(environ, "GORCH_UI_LOCKOUT_MINUTES", 15)),
    )
    if oidc:
        return replace(base, mode="oidc")
    password = environ.get("GORCH_UI_PASSWORD") or None
    viewer = environ.get("GORCH_UI_VIEWER_PASSWORD") or None
    if password or viewer:
        return replace(base, mode="password", password=password, viewer_password=viewer)
    return replace(base, operators=frozenset())


def password_role(config: AuthConfig, given: str) -> Role | None:
    """The role ``given`` signs in as, or None for a wrong password (compared in constant time)."""
    for secret, role in ((config.password, Role.OPERATOR), (config.viewer_password, Role.VIEWER)):
        if secret and hmac.compare_digest(given.encode(), secret.encode()):
            return role
    return None


def oidc_operator(config: AuthConfig, *, email: str | None, name: str | None) -> Operator:
    """The operator an OIDC user is: named by email, a viewer unless allowed to act."""
    who = (email or name or "").strip()
    allowed = not config.operators or who.lower() in config.operators
    return Operator(who, Role.OPERATOR if allowed else Role.VIEWER, "oidc")


def actor(op: Operator) -> str:
    """The name an action is recorded under. Raises ``PermissionDenied`` for viewers."""
    if not op.can_act:
        raise PermissionDenied(f"{op.name or 'this user'} is a viewer and cannot act")
    name = op.name.strip()
    if not name:
        raise PermissionDenied("enter your name first: every action is recorded under it")
    return name


def roles_of(name: str, environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The roles ``name`` holds for deciding waits assigned to ``role:NAME``.

    From ``GORCH_UI_ROLES``: ``"ann=approver,finance;bob=approver"`` (names compared trimmed
    and case-insensitively). The engine trusts these as the UI's word, as it trusts the
    signed-in name; it decides who may resolve what (see docs/ui.md, "Who may decide").
    """
    spec = (os.environ if environ is None else environ).get("GORCH_UI_ROLES", "")
    who = name.strip().casefold()
    found: list[str] = []
    for part in spec.split(";"):
        person, _, roles = part.partition("=")
        if person.strip().casefold() == who and who:
            found += [r.strip() for r in roles.split(",") if r.strip()]
    return tuple(dict.fromkeys(found))
