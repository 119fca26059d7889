#!/usr/bin/env bash
# Start the gorch operator UI on a fresh machine:
#   1. create .venv (if missing) and install gorch editable with the ui extra;
#   2. run `streamlit run gorch_ui` on GORCH_DB_URL (default: the SQLite file gorch.db here,
#      seeded with the example workflows in every state on first start).
# Usage: bash scripts/ui.sh [streamlit options, e.g. --server.port 8600]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ ! -d .venv ]]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[ui]'

export GORCH_DB_URL="${GORCH_DB_URL:-sqlite:///gorch.db}"
echo "gorch UI on ${GORCH_DB_URL} (Ctrl-C stops it)" >&2
exec .venv/bin/streamlit run gorch_ui --server.headless true --browser.gatherUsageStats false "$@"
