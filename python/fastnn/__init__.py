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

__version__ = "0.1.0"


def set_num_threads(n):
    """Threads used by kernels. Results are identical bit for bit whatever the thread count."""
    ops.set_num_threads(int(n))


def get_num_threads():
    return ops.get_num_threads()


def build_info():
    """How the kernels in use were compiled: ISA extensions Eigen vectorises with, Eigen and OpenMP versions."""
    info = ops.runtime_info()
    simd = info["eigen_simd"].split()
    return {"native": info["level"] == "native", "avx2": "avx2" in simd, "fma": "fma" in simd,
            "avx512": "avx512f" in simd, "eigen": info["eigen"], "openmp": info["openmp_version"],
            "level": ops.cpu_level}


__all__ = ["nn", "init", "ops", "optim", "data", "callbacks", "schedules", "regularizers", "utils", "pretraining", "tune",
           "distributed", "onnx", "Trainer",
           "Perceptron", "save", "load", "save_state_dict", "load_state_dict", "register_module", "manual_seed",
           "set_num_threads", "get_num_threads", "build_info", "show_config", "__version__"]
