"""Version 2: a step added before the wait (already passed) and one after it; 'last' changed."""

from engine import On, S, Section, Step, Wait, WaitForUserAction, Workflow


class Deploy(Workflow):
    type_name = "deploy"
    log: list[str] = []
    audited: bool = False

    def definition(self) -> Section:
        return S(
            Step("first", lambda: self.log.append("v2 first")),
            Step("added before", lambda: self.log.append("v2 added before")),
            Wait("approval", On("approve", WaitForUserAction(
                approve=lambda: self.log.append("approved by v2"), deny=lambda r: None))),
            Step("audit", self.audit),
            Step("last", lambda: self.log.append("v2 last")),
        )  # fmt: skip

    def audit(self) -> None:
        self.audited = True


WORKFLOWS = [Deploy]
