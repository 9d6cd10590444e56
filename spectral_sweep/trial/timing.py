"""Choices made by timing the candidates on the machine at hand, not by a rule of thumb.

What is fastest depends on the device, the model and the batch size (on one H200 the bf16 +
channels_last "fast path" ran VGG-16 at B = 128 at 0.77x of plain fp32; on CPU the cheaper
Hessian-vector product differs between networks), so each choice is measured where it is used:

* ``fastest`` times callables against each other (interleaved, fastest repeat counts) and keeps a
  default unless another candidate beats it by a margin, so that timing noise does not flip a
  choice between two near-equal candidates;
* ``ProductChoice`` picks the cheaper curvature product from the first real products of a
  measurement (no product is wasted: both methods compute the same matrix);
* ``ChoiceStore`` keeps a choice in the sweep folder, so that a resume or a rerun uses the one
  the first run made instead of a second run's noise.

The clock is injectable everywhere (``clock=``): tests plant costs and get deterministic choices.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from spectral_sweep.files import config_key, set_aside

Clock = Callable[[], float]
PRODUCTS = ("double_backward", "forward_over_reverse")


def device_clock(device) -> Clock:
    """perf_counter after the device has finished its queued work (CUDA runs asynchronously)."""
    device = torch.device(device)

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return clock


@dataclass
class Timed:
    """The outcome of ``fastest``: the choice and each candidate's best time (seconds per call)."""

    choice: str
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        return {"choice": self.choice, "seconds": dict(self.seconds)}


def fastest(candidates: dict[str, Callable[[], object]], *, repeats: int = 2, warmup: int = 1,
            clock: Clock = time.perf_counter, default: str | None = None, margin: float = 0.1,
            prune: float = 2.0) -> Timed:
    """Time each candidate ``warmup`` untimed then ``repeats`` timed calls, interleaved, and
    return the fastest by its best call. ``default`` (when given) is kept unless another
    candidate is faster by more than ``margin`` (a fraction of the default's time). After the
    first timed round a candidate slower than ``prune`` x the best is not timed again: a loser
    by that much (bf16 autocast on a CPU: ~7x) costs one timed call, not ``repeats``."""
    if not candidates:
        raise ValueError("fastest needs at least one candidate")
    for run in candidates.values():
        for _ in range(warmup):
            run()
    best = {name: float("inf") for name in candidates}
    for round_ in range(repeats):
        for name, run in candidates.items():
            if round_ and best[name] > prune * min(best.values()):
                continue
            start = clock()
            run()
            best[name] = min(best[name], clock() - start)
    return Timed(pick(best, default, margin), best)


def pick(seconds: dict[str, float], default: str | None = None, margin: float = 0.0) -> str:
    """The cheapest of ``seconds``; ``default`` stays unless beaten by more than ``margin``."""
    cheapest = min(seconds, key=seconds.get)
    if default in seconds and seconds[cheapest] >= (1 - margin) * seconds[default]:
        return default
    return cheapest


@dataclass
class ProductChoice:
    """The cheaper curvature product, timed on the first products of a measurement.

    Per number of samples in a product (a batch size, or a chunk size for full data), the methods
    take turns: one untimed warm-up product each (graph building, torch.func's first trace), then
    ``timed`` timed products each; from then on the cheaper one is used. Every product is a real
    product, so the choice costs only the slower method's few products. Share one object across
    the operators of a measurement (``measure_spectrum`` does) so the choice is made once.
    """

    methods: tuple[str, ...] = PRODUCTS
    timed: int = 2
    clock: Clock | None = None           # None: the operator's device clock
    seen: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    chosen: dict[int, str] = field(default_factory=dict)

    def method(self, samples: int) -> str:
        """The method for the next product over ``samples`` samples."""
        if samples in self.chosen:
            return self.chosen[samples]
        seen = self.seen.setdefault(samples, {m: [] for m in self.methods})
        return min(self.methods, key=lambda m: len(seen[m]))   # turns, in order of ``methods``

    def observe(self, samples: int, method: str, seconds: float) -> None:
        """Record one product's time; decide once every method has its timed products."""
        seen = self.seen.setdefault(samples, {m: [] for m in self.methods})
        seen[method].append(seconds)
        if samples not in self.chosen and all(len(s) > self.timed for s in seen.values()):
            self.chosen[samples] = pick(self.best(samples))

    def best(self, samples: int) -> dict[str, float]:
        """Each method's fastest timed product over ``samples`` samples (warm-ups left out)."""
        return {m: min(s[1:]) for m, s in self.seen.get(samples, {}).items() if len(s) > 1}

    def summary(self) -> dict:
        """What the record says: the method used for each size and the timings behind it."""
        return {"asked": "auto",
                "used": {str(n): m for n, m in sorted(self.chosen.items())},
                "seconds": {str(n): self.best(n) for n in sorted(self.seen)}}


class ChoiceStore:
    """Choices made by timing, one JSON file per key under ``folder``.

    The first writer of a key wins (a hard link refuses an existing name), and everyone then
    reads the stored value: two jobs of a sweep that timed the same key concurrently end up with
    the same choice, and a resume or rerun reads it back instead of timing again.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, key: dict) -> Path:
        return self.folder / f"{config_key(key)}.json"

    def get(self, key: dict, choices: tuple[str, ...] | None = None) -> dict | None:
        """The stored value of ``key``, or None: none stored, or one that cannot be used (not JSON,
        another key's, a ``choice`` not among ``choices``, a time that is not a finite number). A
        bad one is set aside as ``<file>.bad`` with a warning naming it, so the choice is timed again."""
        path = self.path(key)
        try:
            stored = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            return self._bad(path, f"unreadable: {e}")
        problem = _value_problem(stored, key, choices)
        return self._bad(path, problem) if problem else stored["value"]

    @staticmethod
    def _bad(path: Path, problem: str) -> None:
        warnings.warn(f"autotune file {path} {problem}; set aside as {set_aside(path).name}, timing again",
                      stacklevel=3)
        return None

    def put(self, key: dict, value: dict) -> dict:
        """Store ``value`` under ``key`` unless a value is there already; return the stored one."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        tmp.write_text(json.dumps({"key": key, "value": value}, indent=1, sort_keys=True))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        stored = self.get(key)
        return value if stored is None else stored


def _value_problem(stored, key: dict, choices: tuple[str, ...] | None) -> str | None:
    """Why a stored choice cannot be used, or None."""
    value = stored.get("value") if isinstance(stored, dict) else None
    if not isinstance(value, dict):
        return f"holds {value!r}, not a choice"
    if config_key(stored.get("key", key)) != config_key(key):   # as JSON: a tuple reads back as a list
        return "is another key's"
    if choices is None:   # a caller that knows no schema: any dict will do
        return None
    choice = value.get("choice")
    if choice not in choices:
        return f"holds choice {choice!r}, not one of {', '.join(choices)}"
    if not isinstance(value.get("seconds", {}), dict):
        return f"holds seconds {value['seconds']!r}, not one time per candidate"
    bad = [k for k, v in value.items() if k not in ("choice", "why") and not _time(v)]
    if bad:
        return f"holds {bad[0]}={value[bad[0]]!r}, not a finite number"
    return None


def _time(v) -> bool:
    """A stored number (seconds, a count) or a dict of them: finite (``pays_s`` may be negative)."""
    if isinstance(v, dict):
        return all(_time(x) for x in v.values())
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
