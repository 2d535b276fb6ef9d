"""fastnn: fast CPU neural-network training. C++ kernels (Eigen, OpenMP) behind a small PyTorch-style API."""
from .random import manual_seed
from . import init, nn, ops, optim, data, callbacks, schedules, regularizers, utils
from . import tune
from .trainer import Trainer
from .perceptron import Perceptron
from .serialization import save, load, save_state_dict, load_state_dict, register_module
from . import pretraining
from . import distributed  # fnn.distributed.rank() etc.; it imports mpi4py only in distributed.init()
from . import onnx  # imports the onnx package only when export/load run
from ._config import show_config
from .amp import autocast, is_autocast_enabled

__version__ = "0.1.0"


def set_num_threads(n):
    """Set the number of threads the kernels use, for the calling Python thread.

    Results are identical bit for bit whatever the thread count. Other Python threads start with
    ``OMP_NUM_THREADS``, or one thread per core.

    Parameters
    ----------
    n : int
        The thread count, >= 1.

    See Also
    --------
    get_num_threads, show_config

    Examples
    --------
    >>> import fastnn as fnn
    >>> before = fnn.get_num_threads()
    >>> fnn.set_num_threads(1); fnn.get_num_threads()
    1
    >>> fnn.set_num_threads(before)
    """
    ops.set_num_threads(int(n))


def get_num_threads():
    """The number of threads the kernels use on the calling Python thread.

    Returns
    -------
    int
        The thread count.

    See Also
    --------
    set_num_threads

    Examples
    --------
    >>> import fastnn as fnn
    >>> fnn.get_num_threads() >= 1
    True
    """
    return ops.get_num_threads()


def build_info():
    """How the kernels in use were compiled.

    Returns
    -------
    dict
        ``native`` (a ``-march=native`` build), ``avx2``, ``fma``, ``avx512`` (the ISA extensions Eigen
        vectorises with), the ``eigen`` and ``openmp`` versions, and the CPU ``level`` in use.

    See Also
    --------
    show_config : everything about the build and the machine, printed.

    Examples
    --------
    >>> import fastnn as fnn
    >>> sorted(fnn.build_info())
    ['avx2', 'avx512', 'eigen', 'fma', 'level', 'native', 'openmp']
    >>> fnn.build_info()["level"] in ("baseline", "avx2", "avx512", "native")
    True
    """
    info = ops.runtime_info()
    simd = info["eigen_simd"].split()
    return {"native": info["level"] == "native", "avx2": "avx2" in simd, "fma": "fma" in simd,
            "avx512": "avx512f" in simd, "eigen": info["eigen"], "openmp": info["openmp_version"],
            "level": ops.cpu_level}


__all__ = ["nn", "init", "ops", "optim", "data", "callbacks", "schedules", "regularizers", "utils", "pretraining", "tune",
           "distributed", "onnx", "Trainer",
           "Perceptron", "save", "load", "save_state_dict", "load_state_dict", "register_module", "manual_seed",
           "set_num_threads", "get_num_threads", "build_info", "show_config", "autocast", "is_autocast_enabled",
           "__version__"]
