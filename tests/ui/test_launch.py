"""Starting the UI: ``gorch ui`` / ``python -m gorch_ui`` and their messages."""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from engine import cli
from gorch_ui import APP_FILE
from tests.ui.helpers import ROOT, free_port, healthy


def test_ui_command_runs_streamlit_on_the_packaged_app() -> None:
    cmd, env = cli.ui_command(
        "sqlite:///x.db", "myapp", port=8600, headless=True, extra=["--theme.base", "dark"]
    )
    assert cmd == [
        sys.executable, "-m", "streamlit", "run", str(APP_FILE.parent),
        "--server.port", "8600", "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
        "--theme.base", "dark",
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


def test_ui_command_turns_usage_statistics_and_the_email_prompt_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STREAMLIT_SERVER_SHOW_EMAIL_PROMPT", raising=False)
    cmd, env = cli.ui_command(None, None, extra=["--browser.gatherUsageStats", "true"])
    flags = list(itertools.pairwise(cmd))
    # off, unless the user's own option (after ours: the last one wins) turns them on
    assert flags.index(("--browser.gatherUsageStats", "false")) < flags.index(
        ("--browser.gatherUsageStats", "true")
    )
    assert env["STREAMLIT_SERVER_SHOW_EMAIL_PROMPT"] == "false"
    monkeypatch.setenv("STREAMLIT_SERVER_SHOW_EMAIL_PROMPT", "true")
    assert cli.ui_command(None, None)[1]["STREAMLIT_SERVER_SHOW_EMAIL_PROMPT"] == "true"


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("args", "verbose"),
    [(["ui"], None), (["ui", "-v"], "1"), (["-v", "ui"], "1"), (["-v", "ui", "-vv"], "3")],
)
def test_gorch_ui_v_is_passed_to_the_app(
    monkeypatch: pytest.MonkeyPatch, args: list[str], verbose: str | None
) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []

    def fake_exec(path: str, cmd: list[str], env: dict[str, str]) -> None:
        seen.append((cmd, env))
        raise SystemExit(0)

    monkeypatch.delenv("GORCH_VERBOSE", raising=False)
    monkeypatch.setattr(cli.os, "name", "posix")
    monkeypatch.setattr(cli.os, "execve", fake_exec)
    result = CliRunner().invoke(cli.main, [*args, "--server.runOnSave", "false"])
    assert result.exit_code == 0, result.output
    ((cmd, env),) = seen
    assert cmd[-2:] == ["--server.runOnSave", "false"]  # what gorch does not know goes on
    assert env.get("GORCH_VERBOSE") == verbose


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(("value", "level"), [("1", logging.INFO), ("2", logging.DEBUG)])
def test_the_app_logs_at_the_level_gorch_ui_v_asks(
    ui_env: str, monkeypatch: pytest.MonkeyPatch, value: str, level: int
) -> None:
    monkeypatch.setenv("GORCH_VERBOSE", value)
    at = AppTest.from_file(str(APP_FILE), default_timeout=60).run()
    assert not at.exception, at.exception
    assert logging.getLogger().level == level
    alembic = logging.WARNING if level == logging.INFO else logging.NOTSET
    assert logging.getLogger("alembic").level == alembic


def notebook_ui_command() -> list[str]:
    """The command notebook 4 gives to open its database in the UI."""
    nb = json.loads((ROOT / "notebooks" / "04_sqlite_and_ui.ipynb").read_text())
    (command,) = re.findall(r"```bash\n(.*?)\n```", "".join(nb["cells"][0]["source"]), re.S)
    return shlex.split(command)


@pytest.mark.parametrize("headless", [True, False], ids=["headless", "desktop"])
def test_gorch_ui_serves_from_any_directory_without_streamlits_questions(
    tmp_path: Path, headless: bool
) -> None:
    """Notebook 4's command, in a folder with no gorch_ui in it, on a first run of Streamlit
    (no ~/.streamlit): it serves, with no usage notice and no email prompt."""
    argv = notebook_ui_command()
    assert argv[:2] == ["gorch", "ui"]
    gorch = Path(sys.executable).with_name("gorch")
    assert gorch.is_file(), "the gorch script is not installed: pip install -e ."
    (tmp_path / "home").mkdir()
    bin_dir = tmp_path / "bin"  # a desktop's browser opener that only notes the URL
    bin_dir.mkdir()
    (bin_dir / "xdg-open").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "opened"}\n')
    (bin_dir / "xdg-open").chmod(0o755)
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("STREAMLIT_SERVER_SHOW_EMAIL_PROMPT", None)
    port = free_port()
    args = ["--port", str(port), "--server.address", "127.0.0.1"]
    args += ["--headless"] if headless else ["--server.headless", "false"]
    log = tmp_path / "log"
    proc = subprocess.Popen(
        [str(gorch), *argv[1:], *args], cwd=tmp_path, env=env,
        stdin=subprocess.DEVNULL, stdout=log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not healthy(f"http://127.0.0.1:{port}"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"the UI did not start in 60 s:\n{log.read_text()}"
            time.sleep(0.2)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "Collecting usage statistics" not in text and "Email" not in text, text
    if not headless:
        assert f":{port}" in (tmp_path / "opened").read_text()  # a desktop gets a browser


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
