"""Starting the UI: ``gorch ui`` / ``python -m gorch_ui`` and their messages."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from engine import cli
from gorch_ui import APP_FILE
from tests.ui.helpers import free_port


def test_ui_command_runs_streamlit_on_the_packaged_app() -> None:
    cmd, env = cli.ui_command(
        "sqlite:///x.db", "myapp", port=8600, headless=True, extra=["--theme.base", "dark"]
    )
    assert cmd == [
        sys.executable, "-m", "streamlit", "run", str(APP_FILE.parent),
        "--server.port", "8600", "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--theme.base", "dark",
    ]  # fmt: skip
    assert (env["GORCH_DB_URL"], env["GORCH_APP"]) == ("sqlite:///x.db", "myapp")
    assert (APP_FILE.parent / "streamlit_app.py").is_file()  # what `streamlit run <dir>` runs


def test_gorch_ui_passes_db_and_app_through_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}

    def fake_exec(path: str, cmd: list[str], env: dict[str, str]) -> None:
        seen.update(path=path, cmd=cmd, env=env)
        raise SystemExit(0)

    monkeypatch.setattr(cli.os, "name", "posix")
    monkeypatch.setattr(cli.os, "execve", fake_exec)
    result = CliRunner().invoke(cli.main, ["ui", "--db", "memory://", "--port", "9000"])
    assert result.exit_code == 0, result.output
    assert seen["path"] == sys.executable
    assert seen["env"]["GORCH_DB_URL"] == "memory://"
    assert seen["cmd"][3:7] == ["run", str(APP_FILE.parent), "--server.port", "9000"]


def test_gorch_ui_says_to_install_the_ui_extra_without_streamlit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        cli.importlib.util, "find_spec", lambda name: None if name == "streamlit" else real(name)
    )
    result = CliRunner().invoke(cli.main, ["ui"])
    assert result.exit_code == 1
    assert "pip install 'gorch[ui]'" in result.output


def test_python_m_gorch_ui_serves_the_app(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GORCH_DB_URL": f"sqlite:///{tmp_path / 'g.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gorch_ui", "--headless", "--port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=tmp_path, env=env, stdout=(tmp_path / "log").open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/inbox", timeout=1) as r:
                    assert r.status == 200 and b"<html" in r.read().lower()
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "log").read_text()
                assert time.monotonic() < deadline, "the UI did not start in 60 s"
                time.sleep(0.2)
    finally:
        proc.terminate()  # `gorch ui` became Streamlit (exec): this stops the server itself
        try:
            assert proc.wait(10) is not None
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def test_readme_start_command_is_the_ui_script() -> None:
    root = APP_FILE.parents[1]
    readme = (root / "README.md").read_text()
    start = readme.split("## Start the UI", 1)[1].split("\n## ", 1)[0]
    assert "```bash\nbash scripts/ui.sh\n```" in start
    script = (root / "scripts" / "ui.sh").read_text()
    assert "pip install -q --disable-pip-version-check -e '.[ui]'" in script
    assert 'GORCH_DB_URL="${GORCH_DB_URL:-sqlite:///gorch.db}"' in script
    assert "exec .venv/bin/streamlit run gorch_ui --server.headless true" in script
