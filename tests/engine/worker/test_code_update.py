"""Updating code under a stored workflow: stored by v1, finished by v2 in a new process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from engine import Engine, PollingResumer, SQLModelStore, WorkflowStatus

APPS = Path(__file__).resolve().parents[2] / "apps"
sys.path.insert(0, str(APPS))
import deploy_v1  # noqa: E402

FINISH_WITH_V2 = textwrap.dedent("""
    import json, sys
    import deploy_v2
    from engine import Engine, PollingResumer, SQLModelStore
    engine = Engine(SQLModelStore(sys.argv[1]), deploy_v2.WORKFLOWS, resumer=PollingResumer())
    engine.on_callback("d1", "approve", {"approved": True}, actor="v2 process")
    info = engine.execute("d1")
    print(json.dumps({"status": info.status.value, "state": info.state.model_dump()}))
""")


def test_stored_by_v1_finished_by_v2_in_a_new_process(db_url: str) -> None:
    store = SQLModelStore(db_url)
    engine = Engine(store, deploy_v1.WORKFLOWS, resumer=PollingResumer())
    engine.new_workflow(deploy_v1.Deploy(), "d1")
    info = engine.execute("d1")
    assert info.status is WorkflowStatus.WAITING and info.state.log == ["v1 first"]

    out = subprocess.run(
        [sys.executable, "-c", FINISH_WITH_V2, db_url],
        env={**os.environ, "PYTHONPATH": str(APPS)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "finished"
    # v1's step ran once; v2 handled the approval and ran its new step and its version of
    # 'last'; the step v2 added before the wait was never run: the thread was past it.
    assert result["state"]["log"] == ["v1 first", "approved by v2", "v2 last"]
    assert result["state"]["audited"] is True
    steps = [h.statement for h in engine.history("d1") if h.kind == "step"]
    assert steps == ["first", "audit", "last"]
    store.close()
