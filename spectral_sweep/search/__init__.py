"""Where a point's trials go and what they say: the two edges of its learning rates, with intervals.

``adaptive.py`` is the default search (trials placed by the edge model of ``edge.py``, several at a
time); ``bisect.py`` the deterministic bracket and the grid; ``result.py`` what every search returns;
``calibration.py`` simulated sweeps with a planted law, to check the intervals.
"""
