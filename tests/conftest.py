"""One torch thread for the whole suite, subprocesses included.

The tests' models are tiny: a second thread only adds synchronisation, and CLI tests that start
subprocesses would otherwise oversubscribe the cores (measured: 5.6 s for test_train.py with one
thread against 106 s with two under load). Results do not depend on it beyond float rounding.
"""

import os

import torch

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)
