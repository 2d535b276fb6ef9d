"""Gate orders of recurrent weights: PyTorch/fastnn stack the gate blocks of W_ih, W_hh, b_ih, b_hh as
LSTM i,f,g,o and GRU r,z,n; ONNX's LSTM wants i,o,f,c and its GRU z,r,h (with linear_before_reset=1, which
is PyTorch's GRU: the reset gate multiplies (W_hn h + b_hn)). RNN has one block and no reorder."""
import numpy as np

# ONNX block k = fastnn block ORDER[mode][k]
TO_ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN_TANH": (0,), "RNN_RELU": (0,)}
ONNX_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def _blocks(a, order):
    parts = np.split(np.asarray(a), len(order), axis=0)
    return np.concatenate([parts[k] for k in order], axis=0)


def to_onnx(a, mode):
    """A fastnn weight or bias (gates stacked on axis 0) in ONNX's gate order."""
    return _blocks(a, TO_ONNX[mode])


def from_onnx(a, mode):
    """The inverse of to_onnx."""
    order = TO_ONNX[mode]
    inverse = [order.index(k) for k in range(len(order))]
    return _blocks(a, inverse)
