"""A loop with retries: import pages one by one; a flaky fetch is retried with back-off."""

from __future__ import annotations

from datetime import timedelta

from engine import Break, For, If, RetryPolicy, Return, S, Section, Step, Workflow


class Import(Workflow):
    """Fetch ``pages`` pages; page numbers in ``flaky`` fail ``failures`` times before working.

    The failure count lives outside the state on purpose: a failed step's state changes are
    discarded, so a real flaky service is simulated by a counter the retries cannot reset.
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
        key = (id(type(self)), self.page, tuple(self.fetched))
        if self.page in self.flaky and _ATTEMPTS.get(key, 0) < self.failures:
            _ATTEMPTS[key] = _ATTEMPTS.get(key, 0) + 1
            raise ConnectionError(f"page {self.page}: service unavailable")
        self.fetched.append(self.page)
        self.page += 1


_ATTEMPTS: dict[tuple[int, int, tuple[int, ...]], int] = {}
