"""Every README snippet works as written: its Python runs, its shell commands exist.

Each ```` ```python ```` block runs in a fresh interpreter in a temporary directory. A block whose
first line starts with ``# continues`` goes on from the Python block before it: it runs after
that block's code, in one script. Shell blocks (```` ```bash ````) are not run (they install,
serve or loop forever); each of their commands is checked instead: a ``gorch`` command line
parses (command and options exist), a script or folder it names exists, a ``pip`` extra is in
``pyproject.toml``. Other code blocks must say they are not code (```` ```text ````).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from engine.cli import main, ui

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)
CONTINUES = "# continues"


def blocks(kind: str) -> list[tuple[int, str]]:
    """(line number, text) of each ```kind block of the README."""
    return [
        (README.count("\n", 0, m.start()) + 1, m.group(2))
        for m in FENCE.finditer(README)
        if m.group(1) == kind
    ]


def python_programs() -> list[tuple[str, str]]:
    """(name, source) of each Python block, with the blocks it continues in front of it."""
    programs: list[tuple[str, str]] = []
    previous = ""
    for line, code in blocks("python"):
        if code.startswith(CONTINUES):
            assert previous, f"README.md:{line}: a block continues, but no Python block is above"
            code = f"{previous}\n{code}"
        programs.append((f"README.md:{line}", code))
        previous = code
    return programs


def shell_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of each command line of each bash block, without comments or ``VAR=``."""
    commands = []
    for line, text in blocks("bash"):
        for i, command in enumerate(text.replace("\\\n", " ").splitlines()):
            argv = shlex.split(command, comments=True)
            while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                argv = argv[1:]
            if argv:
                commands.append((f"README.md:{line + 1 + i}", argv))
    return commands


def test_readme_code_blocks_are_python_bash_or_text() -> None:
    kinds = {m.group(1) for m in FENCE.finditer(README)}
    assert kinds <= {"python", "bash", "text"}, kinds
    assert len(python_programs()) >= 3 and len(shell_commands()) >= 10


def test_a_block_that_continues_is_run_after_the_one_before() -> None:
    programs = dict(python_programs())
    storage = next(code for code in programs.values() if "SQLModelStore(" in code)
    assert "class Expense(Workflow)" in storage  # the quick start runs first


PROGRAMS = python_programs()


@pytest.mark.parametrize(("where", "code"), PROGRAMS, ids=[where for where, _ in PROGRAMS])
def test_readme_python_block_runs(where: str, code: str, tmp_path: Path) -> None:
    (tmp_path / "snippet.py").write_text(code)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GORCH_DB_URL", None)
    out = subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, f"{where} fails:\n{out.stderr}"


def check_gorch(argv: list[str]) -> None:
    """``gorch ARGS``: the command and its options exist (parsed up to ``--help``)."""
    result = CliRunner().invoke(main, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output
    if argv[1:2] == ["ui"]:  # gorch ui passes what it does not know on to streamlit run
        from streamlit import config

        known = {opt for p in ui.params if isinstance(p, click.Option) for opt in p.opts}
        extra = [a.removeprefix("--") for a in argv if a.startswith("--") and a not in known]
        unknown = [a for a in extra if a not in config.get_config_options()]
        assert not unknown, f"neither gorch ui nor streamlit run takes {unknown}"


def check_pip(argv: list[str]) -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for arg in argv:
        if m := re.fullmatch(r"\.\[([\w,]+)\]", arg):
            assert set(m.group(1).split(",")) <= set(extras), arg


COMMANDS = shell_commands()


@pytest.mark.parametrize(("where", "argv"), COMMANDS, ids=[" ".join(a)[:60] for _, a in COMMANDS])
def test_readme_shell_command_exists(where: str, argv: list[str]) -> None:
    program = Path(argv[0]).name
    match program:
        case "gorch":
            check_gorch(argv)
        case "bash" | "python" | "python3" if argv[1:2] != ["-m"]:
            script = ROOT / argv[1]
            assert script.is_file(), f"{where}: no {argv[1]}"
            flags = [a for a in argv[2:] if a.startswith("-")]
            assert all(f in script.read_text() for f in flags), f"{where}: {flags}"
        case "python3" | "python":  # python3 -m venv .venv
            assert argv[1:3] == ["-m", "venv"], f"{where}: {argv}"
        case "pip":
            check_pip(argv)
        case "jupyter":  # jupyter lab FOLDER
            assert all((ROOT / a).is_dir() for a in argv[2:] if not a.startswith("-")), argv
        case _:
            pytest.fail(f"{where}: no check for {program!r}: add one to {Path(__file__).name}")
