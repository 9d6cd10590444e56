"""One torch thread for the whole suite, subprocesses included.

The tests' models are tiny: a second thread only adds synchronisation, and CLI tests that start
subprocesses would otherwise oversubscribe the cores (measured: 5.6 s for test_train.py with one
thread against 106 s with two under load). Results do not depend on it beyond float rounding.
"""

import os

import torch

os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

# The files that run whole sweeps through the command, longest first (measured with --durations on
# 2 cores). `--dist loadfile` hands files to the workers in collection order, so these start first
# and the many short files fill in at the end; in alphabetical order test_resume.py (~80 s) came
# last and kept one worker busy for a minute after the other had finished.
LONGEST_FIRST = ["test_readme.py", "test_resume.py", "test_launchers.py", "test_faults_in_flight.py",
                 "test_ray_executor.py", "test_cli.py", "test_adaptive_jobs.py", "test_adaptive.py"]


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))   # stable: each file's order kept
