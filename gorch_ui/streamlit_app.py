"""The gorch operator app: ``streamlit run gorch_ui``. Wires the sign-in gate and the pages.

Every page is registered with ``st.navigation`` before the gate runs, so a URL such as
``/inbox?workflow=...&wait=...`` survives signing in; no page runs until the gate lets it.
(The pages live in ``views/``, not ``pages/``: Streamlit runs a ``pages/`` folder's scripts
directly on a fresh server, which would skip the gate.)
"""

import os
import sys
from pathlib import Path

try:
    import gorch_ui  # noqa: F401
except ImportError:  # `streamlit run gorch_ui` from a checkout that is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import streamlit as st

from engine import VERBOSE_ENV, configure_logging
from gorch_ui import auth

_verbose = os.environ.get(VERBOSE_ENV, "")
if _verbose.isdigit() and int(_verbose) > 0:  # `gorch ui -v`: gorch's INFO lines
    configure_logging(int(_verbose))

# An operator's toolbar without Streamlit's "Deploy" button, however the app was started
# (`gorch ui` and .streamlit/config.toml set it before the first page too).
st.set_option("client.toolbarMode", "minimal")
st.set_page_config(page_title="gorch", page_icon=":material/account_tree:", layout="wide")

PAGES = [
    st.Page(
        "views/workflows.py",
        title="Workflows",
        icon=":material/list:",
        default=True,
    ),
    st.Page(
        "views/workflow.py", title="Workflow", icon=":material/account_tree:", url_path="workflow"
    ),
    st.Page("views/inbox.py", title="Inbox", icon=":material/inbox:", url_path="inbox"),
    st.Page("views/start.py", title="Start", icon=":material/play_arrow:", url_path="start"),
    st.Page(
        "views/incidents.py", title="Incidents", icon=":material/report:", url_path="incidents"
    ),
    st.Page(
        "views/definitions.py",
        title="Definitions",
        icon=":material/schema:",
        url_path="definitions",
    ),
]

signed_in = st.session_state.get("gorch_operator") is not None
page = st.navigation(PAGES, position="sidebar" if signed_in else "hidden")
if auth.gate() is None:
    st.stop()
elif not signed_in:
    st.rerun()  # the sign-in just happened: draw the navigation too
page.run()
