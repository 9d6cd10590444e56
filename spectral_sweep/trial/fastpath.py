"""A sweep point's training fast path, chosen by timing it: precision, memory format, compilation.

On one H200 the rule of thumb (bf16 autocast + channels_last on CUDA) ran VGG-16 at B = 128 at
0.77x of a plain fp32 loop, and ``torch.compile`` gained 2.6x on VGG-16-BN after 11 s of
compiling but lost on CPU at B = 8. So ``train.precision=auto`` and ``train.channels_last=auto``
time a few training steps of each candidate on the point's device, model and batch size, and
``train.compile=auto`` compiles only where the speed-up can pay for the compile:

* precision first (fp32 against bf16 autocast, contiguous; timed only on ``PRECISION_TIMED_ON``
  devices, fp32 elsewhere), then the memory format at the chosen precision; plain (fp32,
  contiguous) stays unless a candidate is faster by ``MARGIN``, so timing noise does not flip
  near-equal choices between runs;
* compile: skipped when even ``BEST_SPEEDUP`` over the point's remaining eager training time would
  not repay a typical compile (``COMPILE_GUESS_S``); otherwise the forward is compiled once, timed,
  and kept where it is faster; the trials of the point then share it (fresh weights each).

Each choice is stored in the sweep folder (``autotune.ChoiceStore``) keyed by device, model and B,
so a resume or a rerun uses the one the first run made; explicit values in the config win. Every
trial's record names what it ran with (``fast_path``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from spectral_sweep.data.loaders import BatchLoader
from spectral_sweep.files import config_key
from spectral_sweep.trial.timing import ChoiceStore, device_clock, fastest, pick
from spectral_sweep.trial.train import CompiledForward, TrialSettings, _Device, _forward, _step, resolve_device

MARGIN = 0.1
BEST_SPEEDUP = 3.0                        # above the 2.6x of CUDA graphs on VGG-16-BN (H200)
COMPILE_GUESS_S = {"cuda": 10.0, "cpu": 7.0}   # the cheapest compiles measured (H200; 2-core CPU)
STEPS = {"warmup": 1, "repeats": 2}       # calls of one training step per candidate
MIN_PLANNED_STEPS = 200                   # fewer in all: timing (~10 steps) cannot pay back; keep the rule
#: Devices on which bf16 autocast competes with fp32. Not the CPU: there it changes every trial's
#: numerics and lost 0.12x on VGG-16 (results/bench/cpu.md), so a win in a two-step timing is noise,
#: and noise that flips between sweep folders gave the same command different records.
PRECISION_TIMED_ON = ("cuda",)


def tune_settings(settings: TrialSettings, make_model: Callable[[], torch.nn.Module], data,
                  store: ChoiceStore | None, key: dict, planned_steps: int | None = None,
                  clock: Callable[[], float] | None = None,
                  on_timed: Callable[[float], None] | None = None) -> TrialSettings:
    """``settings`` with precision, channels_last and compile resolved by timing.

    ``key`` names the point's model and batch size (the device is added); ``planned_steps`` is how
    many training steps the point expects to run (None: unknown, time anyway). A point planning
    fewer than ``MIN_PLANNED_STEPS`` is not timed: ``auto`` keeps the device's rule (trial/train.py).
    ``on_timed`` hears the seconds a training step of the chosen fast path took, where one was timed
    (now or by an earlier run of the sweep): what the point's trials will cost, before the first.
    """
    if planned_steps is not None and planned_steps < MIN_PLANNED_STEPS:
        return settings
    device = resolve_device(settings.device)
    key = {**key, "device": _device_name(device), "micro_batch": settings.train.micro_batch}
    tuner = _Tuner(settings, make_model, data, device, clock or device_clock(device))
    seconds: list[float] = []   # a step of each timed choice's pick, in the order chosen

    def remember(knob: str, measure: Callable[[], dict]) -> str:
        found = _remember(store, key, knob, measure)
        seconds.extend(s for s in [_step_seconds(found)] if s)
        return found["choice"]

    train = settings.train
    precision = str(train.precision)
    if precision == "auto" and device.type not in PRECISION_TIMED_ON:
        precision = "fp32"
    if precision == "auto":
        precision = remember("precision", lambda: tuner.choose(
            {p: {"precision": p, "channels_last": "false"} for p in ("fp32", "bf16")}, "fp32"))
    channels_last = train.channels_last
    if channels_last == "auto":
        channels_last = remember("channels_last", lambda: tuner.choose(
            {c: {"precision": precision, "channels_last": c} for c in ("false", "true")}, "false"))
    tuned = dataclasses.replace(settings, train=dataclasses.replace(
        train, precision=precision, channels_last=channels_last, compile="false"))
    compiled = None
    if train.compile == "auto":
        decision = remember("compile", lambda: tuner.compile_pays(tuned, planned_steps or 0))
        compiled = _shared(key, device, tuner.compiled) if decision == "true" else None
    elif train.compile == "true":
        compiled = _shared(key, device, None)
    if seconds and on_timed is not None:
        on_timed(seconds[-1])
    return dataclasses.replace(tuned, compiled=compiled)


def _step_seconds(found: dict) -> float | None:
    """Seconds a training step of a stored choice's pick took when it was timed (None: not timed)."""
    if "seconds" in found:
        return found["seconds"].get(found["choice"])
    return found.get("compiled_s") if found["choice"] == "true" else found.get("eager_s")


_COMPILED: dict[str, CompiledForward] = {}   # per process: the jobs of one sweep run one after another


def _shared(key: dict, device: torch.device, fresh: CompiledForward | None) -> CompiledForward:
    """The compiled forward of ``key`` (device, model, B) in this process: jobs of the same point
    (sgd and adam at one B) share one compile, and a decision stored by an earlier run compiles
    here once."""
    name = config_key(key)
    if name not in _COMPILED:
        _COMPILED[name] = fresh or CompiledForward(device)
    return _COMPILED[name]


#: What each timed knob may be: a stored choice outside these is a damaged file, timed again.
CHOICES = {"precision": ("fp32", "bf16"), "channels_last": ("false", "true"), "compile": ("false", "true")}


def _remember(store: ChoiceStore | None, key: dict, knob: str, measure: Callable[[], dict]) -> dict:
    """The stored choice of ``knob`` for ``key`` (``choice``, and what was timed), or a fresh
    measurement, stored (first one wins)."""
    where = {**key, "knob": knob}
    found = store.get(where, CHOICES[knob]) if store is not None else None
    if found is None:
        tqdm.write(f"B={key.get('batch', '?')}: timing {knob} on a few training steps of each choice, once "
                   "per sweep", file=sys.stderr)
        found = measure()
        if store is not None:
            found = store.put(where, found)
    return found


def _id(fields: dict) -> tuple:
    return tuple(sorted(fields.items()))


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


class _Tuner:
    """Times training steps of one model on one fixed batch, candidate by candidate."""

    def __init__(self, settings: TrialSettings, make_model, data, device, clock):
        self.settings, self.make_model, self.device, self.clock = settings, make_model, device, clock
        loader = BatchLoader(data.train, settings.batch_size, device, train=True, seed=settings.seed)
        self.batch = next(iter(loader.epoch(0)))
        self.compiled: CompiledForward | None = None
        self.seconds: dict[tuple, float] = {}   # seconds per step of each candidate timed so far

    def stepper(self, settings: TrialSettings) -> Callable[[], None]:
        """One training step of a fresh model (lr 0: the arithmetic of a step, no drift)."""
        where = _Device.of(settings)
        torch.manual_seed(settings.seed)
        model = self.make_model().to(device=where.device, memory_format=where.memory_format)
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        forward = _forward(model, settings, where.device)
        x, y = self.batch
        return lambda: _step(forward, opt, x, y, where)

    def fastest(self, runs: dict[str, Callable[[], None]]):
        """``timing.fastest`` of ``runs``, with a bar of the steps timed (on a CPU, timing a
        full-width VGG-16 is the first half minute of its point: it should not look hung)."""
        calls = len(runs) * (STEPS["warmup"] + STEPS["repeats"])
        with tqdm(total=calls, desc=f"B={self.settings.batch_size}: timing", unit="step", leave=False,
                  disable=True if self.settings.quiet else None) as bar:
            return fastest({name: _ticking(run, bar) for name, run in runs.items()}, **STEPS, clock=self.clock)

    def choose(self, candidates: dict[str, dict], default: str) -> dict:
        """The fastest of ``candidates`` (name -> TrainConfig fields) with each one's seconds per
        step; a candidate timed before (the same fields) is not timed again."""
        fresh = {name: fields for name, fields in candidates.items() if _id(fields) not in self.seconds}
        runs = {name: self.stepper(dataclasses.replace(
                    self.settings, train=dataclasses.replace(self.settings.train, compile="false", **fields)))
                for name, fields in fresh.items()}
        timed = self.fastest(runs).seconds if runs else {}
        self.seconds.update({_id(fresh[name]): seconds for name, seconds in timed.items()})
        seconds = {name: self.seconds[_id(fields)] for name, fields in candidates.items()}
        return {"choice": pick(seconds, default, MARGIN), "seconds": seconds}

    def compile_pays(self, settings: TrialSettings, planned_steps: int) -> dict:
        """Whether compiling repays itself over ``planned_steps``: a bound first, then measured."""
        eager = self.stepper(settings)
        eager_s = self.fastest({"eager": eager}).seconds["eager"]
        remaining = planned_steps * eager_s
        guess = COMPILE_GUESS_S.get(self.device.type, COMPILE_GUESS_S["cpu"])
        found = {"eager_s": eager_s, "planned_steps": planned_steps}
        if remaining * (1 - 1 / BEST_SPEEDUP) <= guess:
            return {"choice": "false", **found, "why": f"at most {remaining:.3g} s of training left"}
        self.compiled = CompiledForward(self.device)
        start = self.clock()
        compiled = self.stepper(dataclasses.replace(settings, compiled=self.compiled))
        compiled()   # the first call compiles
        compile_s = self.clock() - start
        compiled_s = self.fastest({"compiled": compiled}).seconds["compiled"]
        saved = (planned_steps - 1) * (eager_s - compiled_s)
        choice = "true" if compiled_s < (1 - MARGIN) * eager_s and saved > 0 else "false"
        if choice == "false":
            self.compiled = None
        return {"choice": choice, **found, "compiled_s": compiled_s, "compile_s": compile_s,
                "speedup": eager_s / compiled_s, "pays_s": saved - compile_s}


def _ticking(run: Callable[[], None], bar) -> Callable[[], None]:
    def step() -> None:
        run()
        bar.update()
    return step


PLANNED_TRIALS = {"grid": None, "fixed": 1, "none": 0}   # None: one per search.lrs; bisect: BISECT_TRIALS
BISECT_TRIALS = 8                     # a typical bisection of both edges (fewer with a warm start)


def planned_trials(search) -> int:
    """The trials a point of this search plans before it knows how many it will take: a grid's lrs,
    one fixed lr, none, else a typical bisection's (the adaptive search's too: timing pays off long
    before its cap)."""
    trials = PLANNED_TRIALS.get(str(search.method), BISECT_TRIALS)
    return len(search.lrs) if trials is None else trials


def for_point(config, settings: TrialSettings, make_model, data, folder,
              on_timed: Callable[[float], None] | None = None, trials: int | None = None) -> TrialSettings:
    """``tune_settings`` for one sweep point of ``config`` (a ``config.Config``), its choices kept
    under ``folder``/autotune (the sweep folder: every job of the sweep shares them). ``trials``: the
    point's trials where the caller knows better than the search method (an optimizer that sets its
    own lr runs one, whatever the method)."""
    from pathlib import Path

    from spectral_sweep.trial.train import budget_steps

    if trials is None:
        trials = planned_trials(config.search)
    per_epoch = max(1, len(data.train) // settings.batch_size)
    planned = trials * budget_steps(settings.budget, per_epoch)
    key = {"model": dataclasses.asdict(config.model), "batch": config.batch}
    return tune_settings(settings, make_model, data, ChoiceStore(Path(folder) / "autotune"), key, planned,
                         on_timed=on_timed)
