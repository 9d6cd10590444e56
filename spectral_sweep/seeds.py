"""Child seeds: one derivation and one registry of the named random streams.

A random draw of a run is seeded either by the seed itself (the model's initialisation,
``torch.manual_seed(seed)``; the synthetic set's class textures and ``dataset.subset``'s shuffle,
from the dataset's seed) or by a child seed ``child_seed(seed, stream, index)``: the first 32-bit
word of ``numpy.random.SeedSequence([seed, stream, index])``. Hashing the three numbers keeps
streams apart; ``seed + stream`` would hand seed 1's stream 0 to seed 0's stream 1 and correlate
runs that should be independent. (``lanczos`` and ``warm_start_vector`` take a seed that is
already a child seed.)

``index`` numbers the draws of one stream (the learner's refresh, the sharpness measurement).
A SeedSequence pads its entropy with zeros up to four 32-bit words, so for seed < 2^64 and
stream, index < 2^32 (the only values accepted) ``[seed, stream, 0]`` and ``[seed, stream]``
give the same state: ``child_seed(seed, stream)`` is what the older two-number helpers of
data/ and curvature/spectrum.py gave, bit for bit, and the learner's three-number helper likewise.

The registry
------------
``Stream`` names every stream in use. The numbers are those the code has always used, so that
every record stays bit-identical; they are not all distinct. Streams with equal numbers draw
the same numbers when their seeds are equal:

* ``EPOCHS + k`` (k = 0, 1, ...), a loader's epoch k, is an open range; it coincides with every
  fixed stream below 14. With the run's seed, the training loader's epoch 0 (CPU) shuffles
  exactly as ``SPECTRUM_BATCHES`` draws, so the spectrum's first batch at size b is the first b
  samples of the first training epoch's order. A streamed loader's epoch k seeds its DataLoader
  workers with index 1 of that stream (its order and augmentation draw from index 0, as an
  in-memory loader's do).
* ``SLQ_VECTORS + k``, density start vector k, coincides with the spectrum's streams 0-4.
* ``SYNTHETIC_TRAIN``/``SYNTHETIC_TEST`` use the dataset's ``data_seed`` (0 by default), which
  equals the run's seed only when the run's seed is 0 or ``data_seed`` is null.

A new stream takes the next free number from 15 up (``FIRST_FREE``), above the learner's.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FIRST_FREE", "Stream", "child_seed", "generator"]


class Stream:
    """The named random streams (see the module docstring for which numbers coincide)."""

    # data/loaders.py: a loader's epoch k draws from stream EPOCHS + k (shuffle, augmentation)
    EPOCHS = 0
    # data/synthetic.py: the synthetic dataset's two splits, from its data_seed
    SYNTHETIC_TRAIN = 1
    SYNTHETIC_TEST = 2
    # curvature/spectrum.py: random batches, the full-data subset, density batches, noise-scale batches,
    # and the seeds of the Lanczos start vectors
    SPECTRUM_BATCHES = 0
    SPECTRUM_FULL = 1
    SPECTRUM_DENSITY = 2
    SPECTRUM_NOISE = 3
    SPECTRUM_LANCZOS = 4
    # curvature/lanczos.py: SLQ start vector k draws from stream SLQ_VECTORS + k
    SLQ_VECTORS = 0
    # curvature/learner.py: the fixed curvature batches and the Lanczos start vectors of its two hooks
    LEARNER_BATCH = 10
    LEARNER_LANCZOS = 11
    SHARPNESS_BATCH = 12
    SHARPNESS_LANCZOS = 13
    # point/trials.py: trial k of a sweep point under search=adaptive (its initialisation, data order and
    # augmentation); from the point's seed and k alone, so batch sizes share random numbers
    TRIAL = 14


#: The first stream number no code uses yet.
FIRST_FREE = 15

_SEED_LIMIT = 2 ** 64    # torch's seed range; beyond it [seed, stream] and [seed, stream, 0] differ
_WORD_LIMIT = 2 ** 32


def _checked(name: str, value, limit: int) -> int:
    if isinstance(value, bool) or int(value) != value or not 0 <= int(value) < limit:
        raise ValueError(f"{name} must be an integer in [0, {limit}), got {value!r}")
    return int(value)


def child_seed(seed: int, stream, index: int = 0) -> int:
    """The seed of draw ``index`` of ``stream`` (a ``Stream`` number) under the run's ``seed``:
    the first 32-bit word of ``SeedSequence([seed, stream, index])``."""
    entropy = [_checked("seed", seed, _SEED_LIMIT), _checked("stream", stream, _WORD_LIMIT),
               _checked("index", index, _WORD_LIMIT)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def generator(seed: int, stream, index: int = 0, *, device=None) -> torch.Generator:
    """A torch generator (on ``device``, default the CPU) seeded with ``child_seed(seed, stream, index)``."""
    made = torch.Generator() if device is None else torch.Generator(device=device)
    return made.manual_seed(child_seed(seed, stream, index))
