"""ONNX export and import (the optional `onnx` package: pip install "fastnn[onnx]").

    fnn.onnx.export(model, "model.onnx", input_shape=(1, 1, 28, 28))   # batch axis dynamic
    graph = fnn.onnx.load("model.onnx")                                 # a trainable fastnn Graph

Importing this package does not import onnx; each function does, and says how to install it if missing.
"""
from .export import export, ExportError
from .load import load

__all__ = ["export", "load", "ExportError"]
