"""``python -m gorch_ui [--db URL] [--app MODULE] [streamlit options]``: same as ``gorch ui``."""

from engine.cli import ui

if __name__ == "__main__":
    ui.main(prog_name="python -m gorch_ui")
