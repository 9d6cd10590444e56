"""One sweep point end to end: config -> data and model -> trials -> search -> spectrum -> record.

``run.py`` is the job (``run_point``), and the one place that reads the whole ``Config``: it hands
each stage its own settings. ``check.py`` refuses a job before any folder exists; ``trials.py`` runs
a point's trials, cached; ``pool.py`` runs several at once, each in a ``worker.py``; ``record.py``
and ``store.py`` are the job's record and the files that hold it.
"""
