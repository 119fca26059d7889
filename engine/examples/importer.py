"""A loop with retries: import pages one by one; a flaky fetch is retried with back-off."""

from __future__ import annotations

from datetime import timedelta

from engine import (
    Break,
    For,
    If,
    RetryPolicy,
    Return,
    S,
    Section,
    Step,
    Workflow,
    current_attempt,
)


class Import(Workflow):
    """Fetch ``pages`` pages; page numbers in ``flaky`` fail ``failures`` times before working.

    The failures depend on the step's attempt number (``current_attempt()``), not on a counter
    in the state: a failed step's state changes are discarded, as with a real flaky service.
    """

    pages: int = 3
    page: int = 0
    fetched: list[int] = []
    flaky: list[int] = []
    failures: int = 1
    attempts: int = 3
    stop_after: int | None = None

    def definition(self) -> Section:
        retry = RetryPolicy(max_attempts=self.attempts, initial_interval=timedelta(seconds=5))
        return S(
            For("each page", self.page < self.pages,
                Step("fetch page", self.fetch, retry=retry),
                If(self.stop_after is not None and len(self.fetched) >= (self.stop_after or 0),
                   Break()),
            ),
            Return({"fetched": len(self.fetched)}),
        )  # fmt: skip

    def fetch(self) -> None:
        if self.page in self.flaky and current_attempt() <= self.failures:
            raise ConnectionError(f"page {self.page}: service unavailable")
        self.fetched.append(self.page)
        self.page += 1
