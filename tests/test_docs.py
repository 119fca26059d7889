"""The README is the front door: its examples are real files that run, its commands are real."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_quick_start_is_the_file_the_tests_run() -> None:
    quickstart = (ROOT / "docs" / "quickstart.py").read_text()
    assert quickstart.strip() in [b.strip() for b in python_blocks(README)]


def test_quick_start_runs_as_written() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "docs" / "quickstart.py")],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["please approve 42", "finished paid"]


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```bash\n(.*?)```", README, re.S)
    assert "bash scripts/test.sh\n" in commands
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_statement_table_lists_every_statement() -> None:
    import engine

    for name in ["S", "Step", "Go", "Wait", "On", "WaitFor", "If", "Switch", "Case", "Default",
                 "For", "Break", "Continue", "Return"]:  # fmt: skip
        assert hasattr(engine, name)
        assert f"{name}(" in README, name


def test_docs_links_point_at_files_that_exist() -> None:
    for doc in [README, *(p.read_text() for p in (ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc):
            assert (ROOT / target).exists() or (ROOT / "docs" / target).exists(), target
