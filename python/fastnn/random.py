"""The one random source behind initialisation, dropout, shuffling and augmentation.

`manual_seed(s)` resets it, so the same seed gives the same weights and the same training run bit for bit.
"""
import contextlib

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed):
    """Seed fastnn's random generator: weight initialisation, dropout masks, shuffling and augmentation.

    The same seed gives the same weights and the same training run bit for bit, on any thread count.

    Parameters
    ----------
    seed : int
        The seed.

    Returns
    -------
    numpy.random.Generator
        The new generator (the one :func:`fastnn.random.generator` returns from now on).

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0); a = fnn.nn.Linear(3, 2).weight.data.copy()
    >>> _ = fnn.manual_seed(0); b = fnn.nn.Linear(3, 2).weight.data
    >>> np.array_equal(a, b)
    True
    """
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
