"""What the exporter passes around: a tensor (its ONNX value name and the example array it holds when the
graph runs on the export's example input) and a size read from a tensor's shape at run time."""
from collections import namedtuple

T = namedtuple("T", ["name", "value"])        # a tensor: ONNX value name, example ndarray
D = namedtuple("D", ["name", "value"])        # a size: ONNX 1-D int64 tensor of one element, example int


def tensors_of(struct):
    """The T leaves of a nested structure."""
    if isinstance(struct, T):
        return [struct]
    if isinstance(struct, (tuple, list)):
        return [t for s in struct for t in tensors_of(s)]
    return []


def pick(struct, path):
    for p in path:
        struct = struct[p]
    return struct
