"""The gorch operator app (``streamlit run gorch_ui``): thin Streamlit pages over ``services``.

``gorch_ui.services`` (no Streamlit) holds every query and action; ``streamlit_app.py`` wires
the sign-in gate and the pages in ``views/``.
"""

from pathlib import Path

APP_FILE = Path(__file__).with_name("streamlit_app.py")
"""The script ``streamlit run`` runs (``streamlit run gorch_ui`` finds it in this folder)."""
