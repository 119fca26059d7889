"""The sign-in gate: OIDC through ``st.login``, a shared password, or (said plainly) nothing."""

from __future__ import annotations

import os

import streamlit as st

from gorch_ui import access
from gorch_ui.access import AuthConfig, Operator, Role
from gorch_ui.escape import md


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def config() -> AuthConfig:
    return access.auth_config(os.environ, oidc=_oidc_configured())


def gate() -> Operator | None:
    """Draw the sign-in form and return None until someone is signed in; then the operator.

    The operator is also kept in ``st.session_state["gorch_operator"]`` for the pages.
    """
    cfg = config()
    op: Operator | None
    if cfg.mode == "oidc":
        op = _oidc(cfg)
    elif cfg.mode == "password":
        op = _password(cfg)
    else:
        op = _anonymous()
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


def _password(cfg: AuthConfig) -> Operator | None:
    signed = st.session_state.get("gorch_signed_in")
    if isinstance(signed, Operator):
        return signed
    st.title("gorch")
    with st.form("login"):
        st.text_input("Your name (recorded with every action)", key="login_name")
        st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        name = str(st.session_state.get("login_name") or "").strip()
        role = access.password_role(cfg, str(st.session_state.get("login_password") or ""))
        if role is None:
            st.error("Wrong password.")
        elif not name:
            st.error("Enter your name: every action is recorded under it.")
        else:
            st.session_state["gorch_signed_in"] = Operator(name, role, "password")
            st.session_state.pop("login_password", None)
            st.rerun()
    return None


def _anonymous() -> Operator:
    st.sidebar.warning(
        "No authentication configured: anyone who can open this page can act. "
        "Set GORCH_UI_PASSWORD or configure OIDC (see the README)."
    )
    name = st.sidebar.text_input(
        "Your name", key="operator_name", placeholder="recorded in history"
    )
    read_only = st.sidebar.toggle("Read-only (viewer)", key="read_only")
    return Operator(str(name or "").strip(), Role.VIEWER if read_only else Role.OPERATOR, "none")


def _sidebar(cfg: AuthConfig, op: Operator) -> None:
    if cfg.mode != "none":
        st.sidebar.caption(f"Signed in as **{md(op.name)}** ({op.role.value}, {op.via})")
        if cfg.mode == "oidc":
            st.sidebar.button("Log out", key="logout", on_click=st.logout)
        else:
            st.sidebar.button("Sign out", key="logout", on_click=_sign_out)
    elif op.role is Role.VIEWER:
        st.sidebar.caption("Read-only: actions are disabled.")


def _sign_out() -> None:
    st.session_state.pop("gorch_signed_in", None)
