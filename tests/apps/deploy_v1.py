"""Version 1 of a workflow, for the code-update test."""

from engine import On, S, Section, Step, Wait, WaitForUserAction, Workflow


class Deploy(Workflow):
    type_name = "deploy"
    log: list[str] = []

    def definition(self) -> Section:
        return S(
            Step("first", lambda: self.log.append("v1 first")),
            Wait("approval", On("approve", WaitForUserAction(
                approve=lambda: self.log.append("approved"), deny=lambda r: None))),
            Step("last", lambda: self.log.append("v1 last")),
        )  # fmt: skip


WORKFLOWS = [Deploy]
