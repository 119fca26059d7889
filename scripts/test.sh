#!/usr/bin/env bash
# Set up and run the whole gorch test suite on a fresh machine:
#   1. create .venv (if missing) and install gorch editable with dev, ui, notebook and celery
#      extras;
#   2. start external services when running in CI (see start_services);
#   3. lint and format-check with ruff, type-check with mypy and check the import layering with lint-imports;
#   4. run pytest, passing along any arguments given to this script;
#   5. run the benchmarks' smoke run (bench/run.py --quick): it must complete and print its
#      whole table; it asserts no timings.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# External services needed by some tests. Only acts when CI=true, so it is
# harmless on a developer machine. Extend here when later issues need more.
start_services() {
    if [[ "${CI:-}" != "true" ]]; then
        return 0
    fi
    # PostgreSQL on 127.0.0.1:5432 (for tests marked `postgres`).
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        pg_isready -h 127.0.0.1 -p 5432 \
            || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    fi
    install_system_packages
    # Redis on 127.0.0.1:6379 (the Celery resumer's tests; they also start private servers).
    if ! redis-cli -h 127.0.0.1 ping >/dev/null 2>&1; then
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
            --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    fi
}

# System packages, installed in CI when missing: Graphviz's `dot` (the graph and notebook
# tests check real SVG output), Debian's Chromium (the UI's browser test, tests/ui) and
# redis-server (the Celery resumer's tests, tests/engine/resumers).
install_system_packages() {
    local missing=()
    command -v dot >/dev/null 2>&1 || missing+=(graphviz)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    if (( ${#missing[@]} )); then
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}"
    fi
}

if [[ ! -d .venv ]]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,ui,notebook,celery]'

start_services

lint_dirs=()
for d in engine gorch_ui tests bench; do
    if [[ -d "$d" ]]; then lint_dirs+=("$d"); fi
done
if (( ${#lint_dirs[@]} )); then
    .venv/bin/ruff check "${lint_dirs[@]}"
    .venv/bin/ruff format --check "${lint_dirs[@]}"
fi
if [[ -d engine ]]; then
    .venv/bin/mypy engine
    # The layering contracts in pyproject.toml ([tool.importlinter]; the map is in
    # docs/design.md). tests/test_layering.py checks for import cycles.
    .venv/bin/lint-imports
fi

.venv/bin/python -m pytest "$@"

# The benchmarks' smoke run: fails only if a bench crashes or a row is missing from the table
# (and, with CI=true, if PostgreSQL is unreachable). See docs/benchmarks.md.
.venv/bin/python bench/run.py --quick
