"""The login gate: nobody reaches a page, or the data layer, without a signed-in viewer.

Two ways in, chosen by configuration (never by a switch that turns login off):

- **OpenID Connect** (real deployments): when ``.streamlit/secrets.toml`` (or a file named by
  ``STREAMLIT_SECRETS_FILES``) has an ``[auth]`` section, Streamlit's ``st.login`` signs the person
  in with the company's identity provider; the users file still decides their role, matched on the
  email the provider vouches for, so an unknown person gets no data.
- **The local users file** (the demo, tests, small deployments): a name and a password checked
  against the argon2 hash that `crm users add` wrote.

Every sign-in, refusal and sign-out goes to the audit trail.
"""

from __future__ import annotations

import streamlit as st

from app import data
from crm import audit
from crm.config import ConfigError
from crm.security.roles import Viewer
from crm.security.users import authenticate, load_users, user_for_email, users_path

VIEWER_KEY = "crm_viewer"


def current_viewer() -> Viewer | None:
    return st.session_state.get(VIEWER_KEY)


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, OSError):
        return False


def _record(actor: str, role: str, action: str, **details) -> None:
    audit.record(data.data_dir(), actor=actor, role=role, action=action, details=details)


def _sign_in(viewer: Viewer) -> None:
    st.session_state[VIEWER_KEY] = viewer
    _record(viewer.name, viewer.role, "login", method=viewer.signed_in_with)


def _oidc_gate() -> Viewer | None:
    if not st.user.is_logged_in:
        st.title("CRM dashboard")
        st.write("Sign in with your company account to see the dashboard.")
        st.button("Log in", key="oidc_login", on_click=st.login, type="primary")
        return None
    email = st.user.get("email")
    user = user_for_email(users_path(data.data_dir()), email)
    if user is None:
        _record(str(email or "unknown"), "none", "login_refused", method="oidc", why="no role for this identity")
        st.error("You are signed in, but no role is assigned to your account: ask an admin to add you.")
        st.button("Log out", key="oidc_logout", on_click=st.logout)
        return None
    viewer = user.viewer(signed_in_with="oidc")
    _sign_in(viewer)
    return viewer


def _password_gate() -> Viewer | None:
    path = users_path(data.data_dir())
    st.title("CRM dashboard")
    try:
        users = load_users(path)
    except ConfigError as exc:
        st.error(f"The users file cannot be read: {exc}")
        return None
    if not users:
        st.warning(
            "No users yet, so nobody can sign in. Add one with `crm users add NAME --role admin` "
            "(or run `crm demo`, which creates demo users and prints their passwords)."
        )
        return None
    with st.form("login", clear_on_submit=False):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return None
    user = authenticate(path, name, password)
    if user is None:
        known = name.strip() in users
        _record(name.strip() if known else "unknown user", "none", "login_failed", method="password")
        st.error("Wrong user name or password.")
        return None
    try:
        viewer = user.viewer()
    except ConfigError as exc:
        st.error(str(exc))
        return None
    _sign_in(viewer)
    st.session_state.pop("login_password", None)
    return viewer


def require_viewer() -> Viewer:
    """The signed-in viewer; otherwise the login form, and the script stops (no page code runs)."""
    viewer = current_viewer()
    if viewer is not None:
        return viewer
    viewer = _oidc_gate() if _oidc_configured() else _password_gate()
    if viewer is None:
        st.stop()
    st.rerun()


def sign_out() -> None:
    viewer = current_viewer()
    if viewer is not None:
        _record(viewer.name, viewer.role, "logout", method=viewer.signed_in_with)
    for key in list(st.session_state.keys()):
        del st.session_state[key]
    if viewer is not None and viewer.signed_in_with == "oidc":
        st.logout()
