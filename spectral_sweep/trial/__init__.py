"""One trial: a fresh model trained at one peak learning rate for a fixed budget, and judged.

``train.py`` is the loop; ``optim.py`` builds the optimizer and its schedule; ``outcomes.py`` decides
trained / stalled / diverged; ``fastpath.py`` picks precision, memory format and compilation by timing
them (``timing.py``); ``record.py`` is what a trial leaves behind.
"""
