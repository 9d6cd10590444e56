"""Datasets as a train and a test split, and the loaders that batch them on a device.

``load.py`` turns a preset or a user's ``_target_`` into a ``Data``; ``splits.py`` holds what a split
is (uint8 tensors in memory, or an image folder) and the device-side transforms; ``loaders.py``
batches a split for a trial. The datasets themselves: ``synthetic.py`` (the embedded default),
``torchvision_sets.py`` (CIFAR, Fashion-MNIST, ...), ``imagenet.py``.
"""
