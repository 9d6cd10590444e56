"""What a search returns: the two edges with their brackets and statuses, and the trials."""

from __future__ import annotations

from dataclasses import dataclass, field

BRACKETED, LOWER_BOUND, NOTHING_TRAINS = "bracketed", "lower_bound", "nothing_trains"
NO_STABLE_LR, NOT_SEARCHED = "no_stable_lr", "not_searched"
CHOSEN_BY_LEARNER = "chosen_by_learner"   # an optimizer that sets its own lr: one trial, no edge
INCONCLUSIVE = "inconclusive"   # an edge was found, but its trials reject the model its interval rests on


@dataclass
class SearchResult:
    lr_max: float | None          # the largest lr that trained (None: nothing trained)
    bracket: tuple                # (lr_max, smallest lr above it that did not train); None where unknown
    status: str                   # "bracketed" | "lower_bound" | "nothing_trains" | "inconclusive" | ...
    trials: list = field(default_factory=list)   # [(lr, outcome)] in the order they ran
    lr_blowup: float | None = None                # the largest lr that did not diverge
    blowup_bracket: tuple = (None, None)          # (lr_blowup, smallest diverged lr above it)
    blowup_status: str = NOT_SEARCHED             # "bracketed" | "lower_bound" | "no_stable_lr" | ...
    non_monotone: list = field(default_factory=list)   # trials that contradict the expected shape
    estimate: object = None                       # adaptive search: the upper edge's edge.EdgeFit
    blowup_estimate: object = None                # ... and the blow-up edge's
    problem: str | None = None                    # inconclusive: what the trials showed (edge.problem)
    optimum: object = None                        # adaptive search: lr_opt's optimum.OptimumFit (None: not asked)
    optimum_trials: int = 0                       # ... and the trials it placed beyond the edges'
    capped: bool = False                          # bisect: search.max_trials stopped it before its tolerance
    settled: bool = False                         # adaptive: stopped short of search.precision, the group's
                                                  # verdict being the same wherever its edge lies (search/group.py)

    @property
    def ratio(self) -> float | None:
        lo, hi = self.bracket
        return hi / lo if lo and hi else None
