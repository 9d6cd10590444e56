"""A point asks only for what its group's verdict needs: a later batch size stops refining lr_max
once the verdict on the scaling law would be the same wherever its own edge lies (pure numpy/scipy).

The first points of a group (fewer than two bracketed before this one) refine to ``search.precision``:
they make the line. A later point's edge moves the fitted exponent by at most its own interval's
width over the group's range of log B. So once the verdict (consistent / inconsistent, and which
way) is the same with this point anywhere in its 95% interval, more trials here change the number
but not the answer, and the point stops, with the interval its own trials give (still honest: the
report fits every point with the error it has), and the verdict must be decisive with a margin
(``MARGIN``). ``search.verdict_precision`` bounds how loose such a point may stop. Measured on
simulated sweeps (scripts/calibrate_search.py, results/calibration): on eight sizes over 128x half of
the points settle and a point costs about a quarter fewer trials, the exponent's coverage unchanged
within its noise; on three or four sizes a point rarely settles (its own edge still moves the verdict).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from spectral_sweep import theory
from spectral_sweep.search import edge

#: Where in its posterior a point's edge is tried: the verdict must hold at each of these levels.
LEVELS = (0.025, 0.25, 0.5, 0.75, 0.975)
#: The exponent's interval must be this much narrower than a decisive one (theory.DECISIVE_HALF_WIDTH)
#: for a point to settle: the job judges on the earlier points' own fits, the report refits them with
#: the spread shared, and a verdict decisive only just can turn inconclusive there. Without the margin,
#: SGD-like sweeps tested against the square-root law were decisive in 0.717 of 300 simulated sweeps
#: (0.780 with no point settling); with it, 0.803.
MARGIN = 0.8


def settles_verdict(earlier: Sequence[tuple[float, float, float]], batch: float, expected: float,
                    loosest: float | None) -> Callable[[edge.EdgePosterior], bool] | None:
    """A test for this point's lr_max posterior: True once the group's verdict is settled (module doc).

    ``earlier``: (batch size, lr_max, std of log lr_max) of the group's bracketed points before this
    one; ``expected``: the law under test; ``loosest``: the widest half-width (log lr) at which the
    point may stop so. None (never settles) with fewer than two earlier points, or ``loosest`` None."""
    earlier = [(b, lr, se) for b, lr, se in earlier if lr and lr > 0 and se and se > 0 and b != batch]
    if loosest is None or len(earlier) < 2:
        return None
    sizes, lrs, ses = ([e[i] for e in earlier] for i in range(3))

    def settled(post: edge.EdgePosterior) -> bool:
        if post.half_width() > loosest:
            return False
        pmf = post.mu_marginal()
        se = post.log_se(pmf)
        answers = set()
        for x in post.quantiles(LEVELS, pmf):
            fit = theory.fit_power_law([*sizes, batch], [*lrs, math.exp(x)], se=[*ses, se])
            verdict = theory.verdict(fit, expected, max_half_width=MARGIN * theory.DECISIVE_HALF_WIDTH)
            answers.add((verdict, theory.direction(fit, expected) if verdict == "inconsistent" else ""))
        return len(answers) == 1 and next(iter(answers))[0] != "inconclusive"
    return settled
