"""The trials of one sweep point as a function lr -> TrialRecord, which is all a search needs.

Each call trains a fresh model at one lr (train.run_trial), unless the trial already finished in
an earlier run: trials are cached under the job folder by a hash of everything that decides their
result, and an unfinished trial resumes from its epoch checkpoint. Running out of GPU memory
becomes one line that says what to set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from .errors import UsageError
from .records import TrialCache, config_key
from .results import TrialRecord
from .train import TrainingHook, TrialSettings, run_trial

OUT_OF_MEMORY = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


class TrialRunner:
    """lr -> TrialRecord for one sweep point: cached, resumable, with a progress bar."""

    def __init__(self, make_model: Callable[[], torch.nn.Module], data, settings: TrialSettings,
                 hooks: Callable[[], list[TrainingHook]], identity: dict, cache: TrialCache):
        self.make_model, self.data, self.settings, self.hooks = make_model, data, settings, hooks
        self.identity, self.cache = identity, cache
        self.bar = tqdm(desc=f"{settings.optimizer['name']} B={settings.batch_size}", unit="trial",
                        disable=True if settings.quiet else None)   # None: off when not a terminal

    def __call__(self, lr: float) -> TrialRecord:
        key = config_key(self.identity, round(lr, 12))
        result = self.cache.get(key)
        if result is None:
            result = self._train(lr, key)
            self.cache.put(key, result)
        self.bar.update()
        self.bar.set_postfix(lr=f"{lr:.3g}", outcome=result.outcome)
        return result

    def _train(self, lr: float, key: str) -> TrialRecord:
        resumable = dataclasses.replace(self.settings, checkpoint=str(self.cache.checkpoint(key)))
        try:
            return run_trial(self.make_model, self.data, lr, resumable, hooks=self.hooks())
        except OUT_OF_MEMORY:
            batch = self.settings.batch_size
            raise UsageError(
                f"out of memory training batch {batch} on {self.settings.device}; accumulate gradients "
                f"over smaller pieces with train.micro_batch={max(1, batch // 4)} "
                f"(BatchNorm statistics then come from each piece)") from None

    def close(self) -> None:
        self.bar.close()
