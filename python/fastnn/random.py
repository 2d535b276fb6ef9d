"""The one random source behind initialisation, dropout, shuffling and augmentation.

`manual_seed(s)` resets it, so the same seed gives the same weights and the same training run bit for bit.
"""
import contextlib

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed fastnn's generator (weights init, dropout masks, shuffling)."""
    global _generator
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator():
    """The current numpy Generator used by fastnn."""
    return _generator


@contextlib.contextmanager
def using_generator(rng):
    """Within the block fastnn draws from `rng` (a numpy Generator); the previous generator, whose stream is
    left untouched, is put back afterwards. The generator is process-wide: threads that each need their
    own must not overlap such blocks."""
    global _generator
    saved, _generator = _generator, rng
    try:
        yield rng
    finally:
        _generator = saved
