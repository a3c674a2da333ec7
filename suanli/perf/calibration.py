"""The fitted efficiency factors: one per (accelerator, software stack), read from
suanli/calibration/perf_fitted.yaml. Fitting is `suanli.perf.fit`
(run by benchmarks/planner_accuracy.py).

Lookup falls back, in order, to the median factor of the same stack on other accelerators and to
the median of all factors; the estimate says which. (Falling back to the accelerator's
stack-agnostic factor instead measured worse: leave-one-publication-out 11.6 % vs 6.9 % per row.)
The stack is an input the user sets (`--stack`); its default, `any`, is stack-agnostic: fitted
per accelerator on all its rows, whatever their stack (`suanli.perf.fit`).
"""

from __future__ import annotations

from functools import cache
from statistics import median
from typing import Any

from suanli.spec.calibration import load_calibration

CALIBRATION_FILE = "perf_fitted.yaml"
STACK_AGNOSTIC = "any"


def calibration_data() -> dict[str, Any]:
    return load_calibration(CALIBRATION_FILE)


@cache
def factor_table() -> dict[tuple[str, str], float]:
    """(accelerator slug, stack) → efficiency."""
    return {
        (f["accelerator"], f["stack"]): float(f["efficiency"]) for f in calibration_data().get("factors", [])
    }


def lookup(table: dict[tuple[str, str], float], accelerator: str, stack: str) -> tuple[float, str]:
    """The factor for (accelerator, stack) and where it came from."""
    if (accelerator, stack) in table:
        return table[(accelerator, stack)], f"fitted for {accelerator}/{stack}"
    same_stack = [v for (_, s), v in table.items() if s == stack]
    if same_stack and stack != STACK_AGNOSTIC:
        return median(same_stack), f"median of {stack} on other accelerators (no {accelerator} rows)"
    if stack == STACK_AGNOSTIC:  # no factor over this accelerator's rows: its stacks' median
        same_accelerator = [v for (a, _), v in table.items() if a == accelerator]
        if same_accelerator:
            return median(same_accelerator), f"median of {accelerator} over stacks"
    if table:
        return median(table.values()), "median of all fitted factors (no rows for this stack)"
    return 1.0, "uncalibrated"


@cache
def efficiency_factor(accelerator: str, stack: str) -> float:
    """The calibrated efficiency for `accelerator` (slug) running `stack`."""
    return lookup(factor_table(), accelerator, stack)[0]
