"""When timing an architecture can stop early: it is certainly over the latency budget.

The latency table exists to keep over-budget architectures out of the search, so an
architecture whose requests clearly take longer than the budget need not be timed ``warmup +
repeats`` times (60 requests by default): a 2-layer ChebNet at 2 s per request would cost two
minutes. :class:`OverBudgetRule` watches every request of a measurement (the first, cold one
included) and says when to stop. Two tests, either suffices:

1. **The fastest request so far is over the budget, by a margin that shrinks as requests
   accumulate.** After ``k >= 2`` requests ``t_1..t_k``, stop when

       min(t_1, ..., t_k) > budget * (1 + 2 / (k - 1))

   i.e. the two first requests both over 3x the budget, three over 2x, five over 1.5x, 21 over
   1.1x. Request times are the model's cost plus non-negative interference (other processes, a
   cold cache), so a model within the budget gives requests over it only through interference;
   demanding that *every* request so far be over, and by a wide margin when there are few,
   makes a false stop need several large slowdowns in a row. An architecture 100x over the budget
   stops after two requests.
2. **More than half of the timed requests are over the budget** (exact, no assumption): the
   median of ``repeats`` timed requests is then over the budget whatever the remaining ones
   would take. This catches architectures just over the budget, at about half the timing cost.

A stopped measurement is recorded with what was measured and ``complete = False``
(:class:`~gkd_search.latency.LatencyMeasurement`); it proves only that the architecture is over
*this* budget, so the latency cache reuses it for a budget no larger, and a search with a
larger budget measures the architecture again.
"""

from __future__ import annotations

import math


def margin(requests: int) -> float:
    """The factor over the budget that every one of ``requests`` requests must exceed (test 1);
    infinite below two requests (one request, the cold one, proves nothing)."""
    if requests < 2:
        return math.inf
    return 1.0 + 2.0 / (requests - 1)


class OverBudgetRule:
    """Decides, request by request, when a measurement is certainly over ``budget_ms``.

    Args:
        budget_ms: the latency budget (on the p50).
        repeats: the number of timed requests a complete measurement takes (test 2's ``n``).
    """

    def __init__(self, budget_ms: float, repeats: int) -> None:
        if not budget_ms > 0:
            raise ValueError(f"budget_ms must be positive, got {budget_ms}")
        self.budget_ms = float(budget_ms)
        self.repeats = int(repeats)
        self.requests = 0
        self.fastest_ms = math.inf
        self.timed_over = 0
        #: which test stopped the measurement (``"fastest"`` or ``"median"``), ``None`` while running
        self.reason: str | None = None

    def over_budget(self, seconds: float, timed: bool) -> bool:
        """Record one request (``timed``: one of the ``repeats`` timed ones, not warm-up); True
        when the measurement can stop, over the budget."""
        ms = seconds * 1000.0
        self.requests += 1
        self.fastest_ms = min(self.fastest_ms, ms)
        if timed and ms > self.budget_ms:
            self.timed_over += 1
        if self.fastest_ms > self.budget_ms * margin(self.requests):
            self.reason = "fastest"
        elif self.timed_over > self.repeats // 2:
            self.reason = "median"
        return self.reason is not None
