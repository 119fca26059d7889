"""The incidents page through AppTest: a group of failures retried after its preview, and one
workflow that changed in between skipped and reported."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from engine import Engine, RetryPolicy, S, Section, Step, Workflow, WorkflowStatus
from engine.examples import Import
from tests.apps.hostile_app import PAYLOAD, WID
from tests.ui.helpers import keys, messages
from tests.ui.test_hostile_text import assert_inert, hostile_bodies

Open = Callable[..., AppTest]


def _fail_imports(engine: Engine) -> list[str]:
    ids = [f"import-batch-{n}" for n in (7, 8, 9)]
    for wid in ids:
        engine.new_workflow(Import(pages=2, flaky=[0], failures=1, attempts=1), wid)
    return ["demo-import-failed", *ids]


def test_a_group_is_retried_after_its_preview_and_a_changed_one_is_skipped(
    open_page: Open, engine: Engine
) -> None:
    ids = _fail_imports(engine)
    at = open_page("incidents")
    rows = at.dataframe[0].value
    assert list(rows["workflows"]) == [4]
    assert list(rows["cause"]) == ["ConnectionError: page <n>: service unavailable"]
    assert list(rows["statement"]) == ["fetch page"]
    assert "inc_run" not in keys(at)  # nothing to confirm before a preview

    at.text_input(key="inc_reason").set_value("service is back")
    at.button(key="inc_preview_button").click().run()
    preview = at.dataframe[-1].value
    assert sorted(preview["workflow"]) == sorted(ids)  # every workflow it will touch
    assert set(preview["acts"]) == {"retry"}
    assert at.button(key="inc_run").label == "Retry 4 workflows"
    before = {wid: len(engine.history(wid)) for wid in ids}
    assert {wid: len(engine.history(wid)) for wid in ids} == before  # a preview acts on nothing

    engine.retry("import-batch-8", "carol", "by hand")  # changes after the preview
    at.button(key="inc_run").click().run()
    assert not at.exception, at.exception
    text = " ".join(messages(at)) + " ".join(str(m.value) for m in at.markdown)
    assert "retried 3 workflows" in text and "1 skipped" in text, text
    assert "import-batch-8" in text and "changed since the preview" in text
    operations = set()
    for wid in ids:
        retried = [h for h in engine.history(wid) if h.kind == "retried"]
        if wid == "import-batch-8":
            assert [h.actor for h in retried] == ["carol"]  # never acted on blindly
            continue
        assert [(h.actor, h.detail["reason"]) for h in retried] == [("ana", "service is back")]
        operations.add(retried[0].detail["operation"])
    assert len(operations) == 1  # one audited operation
    assert operations.pop() in text  # its id is shown
    assert engine.get("import-batch-7").status is WorkflowStatus.FAILED  # failed again


def test_cancel_a_group_after_its_preview(open_page: Open, engine: Engine) -> None:
    ids = _fail_imports(engine)
    at = open_page("incidents")
    at.radio(key="inc_action").set_value(at.radio(key="inc_action").options[1]).run()
    at.button(key="inc_preview_button").click().run()
    assert at.button(key="inc_run").label == "Cancel 4 workflows"
    at.button(key="inc_keep").click().run()  # left alone
    assert "inc_run" not in keys(at)
    assert all(engine.get(w).status is WorkflowStatus.FAILED for w in ids)
    at.button(key="inc_preview_button").click().run()
    at.button(key="inc_run").click().run()
    assert all(engine.get(w).status is WorkflowStatus.CANCELLED for w in ids)
    assert any("No failed workflows" in m for m in messages(at))


class HostileFailure(Workflow):
    """A step named with hostile Markdown that raises hostile Markdown."""

    def definition(self) -> Section:
        return S(Step(f"{PAYLOAD} step", self.boom, retry=RetryPolicy(max_attempts=1)))

    def boom(self) -> None:
        raise ValueError(PAYLOAD)


def test_hostile_failures_show_as_text(open_page: Open, engine: Engine) -> None:
    engine.new_workflow(HostileFailure(), WID)
    assert engine.get(WID).status is WorkflowStatus.FAILED
    at = open_page("workflow", id=WID)
    assert_inert(hostile_bodies(at), at_least=2)  # the title, the failure header
    at.button(key="act_retry").click().run()
    assert_inert(hostile_bodies(at), at_least=3)  # and the question
    at = open_page("incidents", incident="")
    assert_inert(hostile_bodies(at), at_least=1)  # the group's description
    at.button(key="inc_preview_button").click().run()
    at.button(key="inc_run").click().run()
    assert_inert(hostile_bodies(at), at_least=1)
