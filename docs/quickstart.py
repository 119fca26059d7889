from engine import Engine, If, MemoryStore, On, Return, S, Step, Wait, WaitForUserAction, Workflow

class Expense(Workflow):
    amount: int
    approved: bool = False

    def definition(self):
        return S(
            Step("notify", lambda: print(f"please approve {self.amount}")),
            Wait("approval", On("decision", WaitForUserAction(approve=self.approve, deny=print))),
            If(self.approved, Return("paid")),
            Return(error="denied"),
        )

    def approve(self):
        self.approved = True

engine = Engine(MemoryStore(), [Expense])
wid = engine.new_workflow(Expense(amount=42))
engine.on_callback(wid, "decision", {"approved": True}, actor="ana")
print(engine.get(wid).status, engine.get(wid).result)  # finished paid
