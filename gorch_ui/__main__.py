"""``python -m gorch_ui [--db URL] [--app MODULE] [streamlit options]``: same as ``gorch ui``."""

import sys

from engine.cli import main

if __name__ == "__main__":
    main(["ui", *sys.argv[1:]], prog_name="python -m gorch_ui")
