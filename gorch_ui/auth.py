"""The sign-in gate: OIDC through ``st.login``, a shared password, or (said plainly) nothing.

With a password, and without authentication, the person is kept in a signed session cookie
(``gorch_ui.sessions``): a reload, a new tab or a graph-node link (a full page load) finds
them signed in until the session expires or they sign out. Streamlit reads cookies
(``st.context.cookies``, from the page's request) but cannot set them from Python, so a
one-line script in the page writes it (``SameSite=Strict``; ``Secure`` on https). The token
is never put in the URL.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime

import streamlit as st

from engine import Clock, Store, SystemClock, db_url, open_store
from gorch_ui import access
from gorch_ui.access import AuthConfig, AuthConfigError, Operator, PermissionDenied, Role
from gorch_ui.escape import md
from gorch_ui.sessions import (
    COOKIE,
    Session,
    SessionError,
    SessionRefused,
    SignIn,
    SignInRefused,
    load_secret,
)

CLOCK: Clock = SystemClock()
"""The time sessions and lock-outs go by (tests put a ``ManualClock`` here)."""

_SESSION = "gorch_session"  # st.session_state: the signed session (``Session``) ...
_TOKEN = "gorch_token"  # ... and its token, as the cookie holds it
_SIGNED_OUT = "gorch_signed_out"  # signed out in this tab: the old cookie is not looked at
_CLEAR_COOKIE = "gorch_clear_cookie"  # the cookie must go (signed out, refused)


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def config() -> AuthConfig:
    return access.auth_config(os.environ, oidc=_oidc_configured())


@st.cache_resource(show_spinner=False)
def _log_store(url: str) -> Store:
    """The store wrong passwords and ended sessions are kept in (the workflows' database):
    opened for the gate alone, so no page and no workflow is touched before signing in."""
    return open_store(url)


def sign_in() -> SignIn:
    """Sessions and sign-ins for this server's settings, secret and database."""
    url = db_url()
    return SignIn(config(), load_secret(os.environ, url), _log_store(url), CLOCK)


def _cookie() -> str | None:
    try:
        value = st.context.cookies.get(COOKIE)
    except Exception:  # no browser request (a bare script run)
        return None
    return value if isinstance(value, str) and value else None


_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_.-]*")  # base64url pieces and dots: nothing to escape


def cookie_script(token: str | None, max_age: int) -> str:
    """The script that sets the session cookie to ``token`` for ``max_age`` seconds (or, with
    None, deletes it). Only our own token goes in, checked to be base64url and dots.

    Raises:
        ValueError: ``token`` holds anything else.
    """
    if token is not None and not _TOKEN_TEXT.fullmatch(token):
        raise ValueError("a session token is base64url text and dots")
    age = max(max_age, 0) if token else 0
    value = json.dumps(f"{COOKIE}={token or ''}; Path=/; Max-Age={age}; SameSite=Strict")
    secure = "(location.protocol === 'https:' ? '; Secure' : '')"
    hide = "<style>.st-key-gorch_cookie { display: none; }</style>"  # takes no room
    return f"{hide}<script>document.cookie = {value} + {secure};</script>"


def _write_cookie(token: str | None, expires_at: datetime | None = None) -> None:
    """Set (or, with None, delete) the session cookie in the browser."""
    age = 0 if expires_at is None else int((expires_at - CLOCK.now()).total_seconds())
    with st.container(key="gorch_cookie"):
        st.html(cookie_script(token, age), unsafe_allow_javascript=True)  # the one script: audited


def gate() -> Operator | None:
    """Draw the sign-in form and return None until someone is signed in; then the operator.

    The operator is also kept in ``st.session_state["gorch_operator"]`` for the pages.
    """
    op: Operator | None
    try:
        cfg = config()
        service = None if cfg.mode == "oidc" else sign_in()
    except (AuthConfigError, SessionError) as e:  # a bad setting or secret: say so, open nothing
        st.title("gorch")
        st.error(md(f"The sign-in is misconfigured: {e}"))
        st.session_state["gorch_operator"] = None
        return None
    if service is None:
        op = _oidc(cfg)
    elif cfg.mode == "password":
        op = _password(service)
    else:
        op = _anonymous(service)
    st.session_state["gorch_operator"] = op
    if op is not None:
        _sidebar(cfg, op)
    return op


def _oidc(cfg: AuthConfig) -> Operator | None:
    if not st.user.get("is_logged_in"):
        st.title("gorch")
        st.write("Sign in to see and steer the workflows.")
        st.button("Log in", key="login_oidc", on_click=st.login, type="primary")
        return None
    email, name = st.user.get("email"), st.user.get("name")
    return access.oidc_operator(cfg, email=str(email or ""), name=str(name or ""))


def _resumed(service: SignIn) -> Session | None:
    """This tab's session, checked again (expired or ended elsewhere: gone), else the
    cookie's, unless this tab signed out."""
    state = st.session_state
    token = state.get(_TOKEN)
    if token is None and not state.get(_SIGNED_OUT):
        token = _cookie()
    if token is None:
        return None
    try:
        session = service.resume(token)
    except SessionRefused:
        for k in (_SESSION, _TOKEN):
            state.pop(k, None)
        state[_CLEAR_COOKIE] = True
        return None
    state[_SESSION], state[_TOKEN] = session, token
    state.pop(_CLEAR_COOKIE, None)
    return session


def _start(service: SignIn, op: Operator) -> None:
    token, session = service.start(op)
    st.session_state[_SESSION], st.session_state[_TOKEN] = session, token
    for k in (_SIGNED_OUT, _CLEAR_COOKIE):
        st.session_state.pop(k, None)


def _password(service: SignIn) -> Operator | None:
    session = _resumed(service)
    if session is not None:
        return session.operator
    st.title("gorch")
    if st.session_state.get(_CLEAR_COOKIE):
        _write_cookie(None)
    with st.form("login"):
        st.text_input("Your name (recorded with every action)", key="login_name")
        st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        name = str(st.session_state.get("login_name") or "")
        try:
            op = service.password(name, str(st.session_state.get("login_password") or ""))
        except SignInRefused as e:  # logged by ``SignIn``; counted here for the person
            refused = st.session_state["gorch_refused"] = (
                st.session_state.get("gorch_refused", 0) + 1
            )
            st.error(md(f"{e} ({refused} refused in this tab.)"))
        else:
            _start(service, op)
            for k in ("login_password", "gorch_refused"):
                st.session_state.pop(k, None)
            st.rerun()
    return None


def _anonymous(service: SignIn) -> Operator:
    state = st.session_state
    st.sidebar.warning(
        "No authentication configured: anyone who can open this page can act. "
        "Set GORCH_UI_PASSWORD or configure OIDC (see the README)."
    )
    if "operator_name" not in state:  # a new tab: the name typed before, from the cookie
        session = _resumed(service)
        if session is not None:
            state["operator_name"] = session.operator.name
            state["read_only"] = session.operator.role is Role.VIEWER
    name = st.sidebar.text_input(
        "Your name", key="operator_name", placeholder="recorded in history"
    )
    read_only = st.sidebar.toggle("Read-only (viewer)", key="read_only")
    op = Operator(str(name or "").strip(), Role.VIEWER if read_only else Role.OPERATOR, "none")
    kept = state.get(_SESSION)
    if not op.name:
        if kept is not None or _cookie():
            for k in (_SESSION, _TOKEN):
                state.pop(k, None)
            with st.sidebar:
                _write_cookie(None)
    elif not isinstance(kept, Session) or kept.operator != op:
        _start(service, op)
    return op


def _sidebar(cfg: AuthConfig, op: Operator) -> None:
    session, token = st.session_state.get(_SESSION), st.session_state.get(_TOKEN)
    if isinstance(session, Session) and isinstance(token, str):
        with st.sidebar:  # idempotent: the same script on every run
            _write_cookie(token, session.expires_at)
    if cfg.mode != "none":
        st.sidebar.caption(f"Signed in as **{md(op.name)}** ({op.role.value}, {op.via})")
        if cfg.mode == "oidc":
            st.sidebar.button("Log out", key="logout", on_click=st.logout)
        else:
            st.sidebar.button("Sign out", key="logout", on_click=_sign_out)
    elif op.role is Role.VIEWER:
        st.sidebar.caption("Read-only: actions are disabled.")


def check_session() -> None:
    """Refuse to act for a tab whose session has ended since its page was drawn (signed out
    in another tab, expired): a click's callback runs before the gate checks again.

    Raises:
        PermissionDenied: the session was ended or has expired.
    """
    token = st.session_state.get(_TOKEN)
    if not isinstance(token, str):
        return  # OIDC, or no name typed: ``access.actor`` decides
    try:
        sign_in().resume(token)
    except SessionRefused as e:
        raise PermissionDenied(
            f"your session has ended ({e.reason}): sign in again; nothing was changed"
        ) from None


def _sign_out() -> None:
    """End the session everywhere (its token is refused from now on) and drop the cookie."""
    state = st.session_state
    session = state.pop(_SESSION, None)
    state.pop(_TOKEN, None)
    state.pop("gorch_operator", None)
    if isinstance(session, Session):
        sign_in().end(session)
    state[_SIGNED_OUT] = True
    state[_CLEAR_COOKIE] = True
