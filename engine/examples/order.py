"""An order fanned out across goroutines: one per item reserves stock, then one charge."""

from __future__ import annotations

from pydantic import BaseModel

from engine import (
    Event,
    For,
    Go,
    If,
    On,
    Return,
    S,
    Section,
    Step,
    Wait,
    WaitFor,
    Workflow,
    current_thread,
)


class Shipped(BaseModel):
    """Input of the ``shipped`` event."""

    carrier: str
    tracking: str


class Order(Workflow):
    """Reserve every item in parallel, charge once all are reserved, then wait for shipping."""

    items: list[str] = ["book"]
    i: int = 0
    reserved: list[str] = []
    charged: bool = False
    tracking: str = ""

    def definition(self) -> Section:
        return S(
            For("start reservations", self.i < len(self.items),
                Go("reserve item", S(
                    Step("reserve", self.reserve),
                ), id=lambda: f"item-{self.i}"),
                Step("next item", self.next_item),
            ),
            WaitFor("all reserved", lambda: len(self.reserved) == len(self.items)),
            Step("charge", self.charge),
            Wait("waiting for shipment",
                On("shipped", Event(model=Shipped, handle=self.ship)),
            ),
            If(bool(self.tracking), Return({"tracking": self.tracking})),
            Return(error="shipped without tracking"),
        )  # fmt: skip

    def next_item(self) -> None:
        self.i += 1

    def reserve(self) -> None:
        thread = current_thread() or ""
        index = int(thread.removeprefix("item-"))
        self.reserved.append(self.items[index])

    def charge(self) -> None:
        self.charged = True

    def ship(self, event: Shipped) -> str:
        self.tracking = f"{event.carrier}:{event.tracking}"
        return self.tracking
