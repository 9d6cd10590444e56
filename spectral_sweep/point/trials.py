"""The trials of one sweep point as a function lr -> TrialRecord, which is all a search needs.

Each call trains a fresh model at one lr (train.run_trial), unless the trial already finished in
an earlier run: trials are cached under the job folder by a hash of everything that decides their
result, and an unfinished trial resumes from its epoch checkpoint. Running out of GPU memory
becomes one line that says what to set.

Two faces: ``runner(lr)`` trains at the point's own seed (search=bisect: one seed's edge), and
``runner.run_round(lrs)`` trains trial k of the point from its own seed
``child_seed(seed, Stream.TRIAL, k)`` (search=adaptive), several at once (point/executor.py picks
the forked pool or Ray). A trial's seed depends on the point's seed and k alone, so a rerun
proposes and finds the same trials. ``KeepTrial`` is what a round's worker runs, whichever kind:
the trial trained and written to the cache before it returns.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from spectral_sweep.errors import UsageError
from spectral_sweep.files import config_key
from spectral_sweep.point.pool import Pool
from spectral_sweep.point.store import TrialCache
from spectral_sweep.seeds import Stream, child_seed
from spectral_sweep.trial.record import TrialRecord
from spectral_sweep.trial.train import TrainingHook, TrialSettings, budget_steps, run_trial

OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


#: Trials a point typically takes: 24.4 on the mission's design in planted sweeps (results/calibration),
#: and lr_opt's own beyond them (search.optimum; calibrate_optimum in spectral_sweep/search/calibration.py).
EXPECTED_TRIALS = 24
EXPECTED_OPTIMUM_TRIALS = 5


def in_hours(minutes: float) -> str:
    """A duration as a person reads it: seconds under a minute, minutes under 90, else hours."""
    if minutes < 1:
        return f"{minutes * 60:.2g} s"
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60:.1f} h"


@dataclass
class KeepTrial:
    """One trial from its own seed, trained and written to the trial cache (atomic) before it returns:
    in this process, in a forked worker or in a Ray task (``elsewhere``: the round's bar is the
    job's, so the trial shows none). Picklable, so Ray puts it, data and all, in its object store once."""

    make_model: Callable[[], torch.nn.Module]
    data: object
    settings: TrialSettings
    hooks: Callable[[], list[TrainingHook]]
    cache: TrialCache
    elsewhere: bool = False

    def __call__(self, lr: float, key: str, seed: int) -> TrialRecord:
        quiet = self.settings.quiet or self.elsewhere
        result = self.train(lr, key, dataclasses.replace(self.settings, seed=seed, quiet=quiet))
        result.seed = seed
        self.cache.put(key, result)
        return result

    def train(self, lr: float, key: str, settings: TrialSettings | None = None) -> TrialRecord:
        resumable = dataclasses.replace(settings or self.settings, checkpoint=str(self.cache.checkpoint(key)))
        try:
            return run_trial(self.make_model, self.data, lr, resumable, hooks=self.hooks())
        except OUT_OF_MEMORY:
            batch = self.settings.batch_size
            raise UsageError(
                f"out of memory training batch {batch} on {self.settings.device}; accumulate gradients "
                f"over smaller pieces with train.micro_batch={max(1, batch // 4)} "
                f"(BatchNorm statistics then come from each piece)") from None

    def away(self) -> KeepTrial:
        """The same work, run by a pool's worker (whose working folder may not be this one's)."""
        cache = copy.copy(self.cache)
        cache.dir = cache.dir.absolute()
        return dataclasses.replace(self, cache=cache, elsewhere=True)


class TrialRunner:
    """lr -> TrialRecord for one sweep point: cached, resumable, with a progress bar."""

    def __init__(self, make_model: Callable[[], torch.nn.Module], data, settings: TrialSettings,
                 hooks: Callable[[], list[TrainingHook]], identity: dict, cache: TrialCache,
                 in_flight: int = 1, cap: int | None = None, typical: int = EXPECTED_TRIALS,
                 open_pool: Callable | None = None):
        self.make_model, self.data, self.settings, self.hooks = make_model, data, settings, hooks
        self.identity, self.cache = identity, cache
        self.work = KeepTrial(make_model, data, settings, hooks, cache)
        self.in_flight, self.pool, self.made = in_flight, None, 0   # made: trials of run_round so far
        self.open_pool = open_pool or Pool   # (work, k) -> map(args, bar) in order, close(); point/executor.py
        self.cap = cap   # the point's trial cap (None: not known), for its cost line (say_cost)
        self.typical = typical   # ... and the trials it typically makes
        self.said, self.finished = False, 0
        self.name = f"{settings.optimizer['name']} B={settings.batch_size}"
        self.bar = tqdm(total=cap, desc=self.name, unit="trial",
                        disable=True if settings.quiet else None)   # None: off when not a terminal

    def __call__(self, lr: float) -> TrialRecord:
        key = config_key(self.identity, round(lr, 12))
        result = self.cache.get(key, lr)
        if result is None:
            result = self._train(lr, key)
            self.cache.put(key, result)
            if self.cap is not None and self.finished + 1 < self.cap:   # one by one: the first trial tells
                self._say_measured([result], "measured on its first trial")
        self._done(result)
        return result

    def run_round(self, lrs: list[float]) -> list[TrialRecord]:
        """Trials at ``lrs``, each from the next trial seed, the unfinished ones at once; results in order."""
        jobs = []
        for lr in lrs:
            seed = child_seed(self.settings.seed, Stream.TRIAL, self.made)
            jobs.append((lr, config_key(self.identity, round(lr, 12), "trial", self.made), seed))
            self.made += 1
        found = {key: self.cache.get(key, lr, seed) for lr, key, seed in jobs}
        todo = [job for job in jobs if found[job[1]] is None]
        if len(todo) > 1 and self.in_flight > 1:
            self.pool = self.pool or self.open_pool(self.work.away(), self.in_flight)
            with self._round_bar(len(todo)) as bar:
                done = self.pool.map(todo, bar)
        else:
            done = [self.work(*job) for job in todo]
        found.update({key: result for (_, key, _), result in zip(todo, done)})
        self._say_measured(done, "measured on its first round")
        results = [found[key] for _, key, _ in jobs]
        for result in results:
            self._done(result)
        return results

    def _done(self, result: TrialRecord) -> None:
        """A trial finished (or was found finished): the point's bar on a terminal, else, unless quiet,
        one line (a log gets a line per trial instead of a bar's frames)."""
        self.finished += 1
        self.bar.update()
        self.bar.set_postfix(lr=f"{result.lr:.3g}", outcome=result.outcome)
        if self.bar.disable and not self.settings.quiet:
            acc = "" if result.test_acc is None else f", test acc {result.test_acc:.3g}"
            tqdm.write(f"{self.name} trial {self.finished}{f'/{self.cap}' if self.cap else ''}: lr={result.lr:.4g} "
                       f"{result.outcome}{acc}, {result.steps} steps in {result.seconds:.0f} s")

    def _say_measured(self, done: list[TrialRecord], source: str) -> None:
        """The cost line from the first trials trained, where the fast path timed nothing."""
        steps, seconds = sum(t.steps for t in done), sum(t.seconds for t in done)
        if steps and not self.said:
            self.say_cost(seconds / steps, source)

    def say_cost(self, per_step: float, source: str) -> None:
        """Once a point: seconds a step of one trial (with the round's others in flight), minutes a
        trial, the point's expected and worst-case time; where the worst passes an hour on a CPU,
        how to make it cheaper. ``source`` says where ``per_step`` came from."""
        if self.said or self.cap is None:
            return
        self.said = True
        steps = self._trial_steps()
        trial = per_step * steps / 60
        typical = min(self.typical, self.cap)
        expected, worst = (trial * n / self.in_flight for n in (typical, self.cap))
        tqdm.write(f"B={self.settings.batch_size}: {per_step:.3g} s a step ({source}), {in_hours(trial)} a trial of "
                   f"{steps} steps; this point takes about {in_hours(expected)} ({typical} trials), at most "
                   f"{in_hours(worst)} ({self.cap} trials), {self.in_flight} in flight")
        if worst > 60 and self.settings.device == "cpu":
            tqdm.write("  that is long for a CPU: for a first look use experiment=quickstart, or make trials cheaper "
                       "(model.width=0.125, train.steps=100, a smaller dataset.subset), or run on a GPU")

    def _trial_steps(self) -> int:
        return budget_steps(self.settings.budget, max(1, len(self.data.train) // self.settings.batch_size))

    def _round_bar(self, trials: int):
        """One bar for a round's steps across its trials in flight (the workers show none)."""
        return tqdm(total=trials * self._trial_steps(), desc=f"B={self.settings.batch_size}: {trials} trials in flight",
                    unit="step", leave=False, disable=True if self.settings.quiet else None)

    def _train(self, lr: float, key: str) -> TrialRecord:
        return self.work.train(lr, key)

    def close(self) -> None:
        self.bar.close()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
