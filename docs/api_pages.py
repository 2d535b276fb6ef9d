"""The API reference pages: one reST page per public module, listing every name of the module's ``__all__``
in an autosummary table (each name gets a page of its own with an anchor, its signature and docstring).

``docs/conf.py`` writes the pages into ``docs/api/`` at every build, so a name added to ``__all__`` is in the
reference without anyone editing a list; ``tests/test_docs.py`` checks the pages cover every public name.
"""
import importlib
import os

# (module, one-line description shown on the page and in the index)
MODULES = [
    ("fastnn", "Top-level functions and classes: training, saving, seeds, threads and configuration."),
    ("fastnn.nn", "Layers, activations, losses, containers and graphs."),
    ("fastnn.nn.functional", "Functional operations: eager on arrays, recorded inside traced graphs."),
    ("fastnn.optim", "Optimizers (one fused C++ update over all parameters)."),
    ("fastnn.data", "Scalers, PCA/ZCA, batching iterators and augmentation transforms."),
    ("fastnn.data.transforms", "Seeded augmentation transforms for ArrayBatches."),
    ("fastnn.callbacks", "Callbacks for fastnn.Trainer."),
    ("fastnn.schedules", "Learning-rate schedules: callables step -> lr."),
    ("fastnn.init", "Weight initialisers (PyTorch's names)."),
    ("fastnn.metrics", "Training metrics."),
    ("fastnn.regularizers", "Weight penalties and constraints."),
    ("fastnn.tune", "Hyper-parameter search."),
    ("fastnn.utils", "Gradient checks, freezing and partial loading."),
    ("fastnn.sklearn", "scikit-learn estimators trained by fastnn (needs scikit-learn)."),
    ("fastnn.pretraining", "Greedy layer-wise autoencoder pretraining."),
    ("fastnn.plot", "Training curves and schedules with matplotlib (needs matplotlib)."),
    ("fastnn.onnx", "ONNX export and import (needs onnx: pip install \"fastnn[onnx]\")."),
    ("fastnn.distributed", "Data-parallel training over MPI (needs mpi4py: pip install \"fastnn[mpi]\")."),
    ("fastnn.ops", "The C++ kernels behind the layers and optimizers, NumPy in and NumPy out (float32 or float64). "
                   "Layers call them; use them directly to build new layers. Their signatures are also in "
                   "``fastnn/_core.pyi``; ``fastnn.ops.cpu_level`` names the kernel library in use."),
]
# Modules without __all__ whose public functions are defined elsewhere: the modules those come from.
# (fastnn.ops re-exports the compiled extensions' functions.)
_DEFINED_IN = {"fastnn.ops": ("fastnn._core", "fastnn._dispatch")}


def public_names(module_name):
    """The public names of a module: its ``__all__``, less submodules (they have pages of their own).

    A module without ``__all__`` (fastnn.init) lists the functions defined in it whose names do not start
    with an underscore; fastnn.ops lists the compiled kernels it imports, in alphabetical order.
    """
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    if names is None:
        homes = _DEFINED_IN.get(module_name, (module_name,))
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) in homes]
        if module_name in _DEFINED_IN:
            names.sort()
    return [n for n in names
            if n != "__version__" and not isinstance(getattr(module, n), type(importlib))]


def page(module_name, description):
    """The reST text of one module's page."""
    title = f"``{module_name}``"
    lines = [f".. _api-{module_name}:", "", title, "=" * len(title), "", description, "",
             f".. currentmodule:: {module_name}", "", ".. autosummary::", "   :toctree: generated/", ""]
    lines += [f"   {name}" for name in public_names(module_name)]
    return "\n".join(lines) + "\n"


def write_pages(directory):
    """Write one page per module into ``directory``; only files whose text changed are rewritten."""
    os.makedirs(directory, exist_ok=True)
    for module_name, description in MODULES:
        path = os.path.join(directory, module_name + ".rst")
        text = page(module_name, description)
        old = None
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                old = f.read()
        if old != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    return [m for m, _ in MODULES]
