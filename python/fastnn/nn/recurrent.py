"""Recurrent layers RNN, LSTM and GRU with PyTorch's interface, parameter names and shapes, so a
PyTorch state_dict loads as it is. Each direction of each layer runs the whole sequence in one C++ call
(kernels/recurrent.hpp): no Python per time step. Also the seed's GatedFeedbackRNN (at the end of the file).

Shapes: input (T, N, I), or (N, T, I) with batch_first=True, or unbatched (T, I); output (T, N, D·H) (batch
first: (N, T, D·H)); h_n (and c_n) (num_layers·D, N, H), D = 2 if bidirectional else 1.

    out, h_n = gru(x, h0)                      # h0 None means zeros
    out, (h_n, c_n) = lstm(x, (h0, c0))
    dx = lstm.backward(grad_out, grad_hn, grad_cn)   # None means zeros; lstm.grad_hx = (dh0, dc0)

Dropout: `dropout=p` drops the outputs of every layer but the last (PyTorch's), a fresh mask per element;
`variational_dropout=p` drops the input of every layer with one mask per sequence shared by all time steps
(Gal and Ghahramani). Both only in training mode, both drawn from fastnn.random.generator().

In a model, recurrent layers compose like any other: a Module subclass that writes no backward is traced, so
a sequence classifier reading the last state is just its forward (backward through the LSTM comes from the
graph, and gradients of an initial state given by another module flow back to it):

    class Classifier(fnn.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = fnn.nn.LSTM(8, 64, num_layers=2, batch_first=True)
            self.head = fnn.nn.Linear(64, 10)
        def forward(self, x):                     # x (N, T, I)
            out, (h, c) = self.rnn(x)
            return self.head(h[-1])               # or self.head(out[:, -1])

Single steps: RNNCell, LSTMCell and GRUCell (PyTorch's names, shapes and parameters weight_ih, weight_hh,
bias_ih, bias_hh) run one time step, `h = cell(x, h)` (LSTMCell: `h, c = cell(x, (h, c))`), through the same
C++ kernels as a one-step sequence. A traced forward that loops over time steps in Python unrolls: each call
is a graph node, and backward runs through time over them (the executor keeps each call's state):

    class Unrolled(fnn.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = fnn.nn.LSTMCell(8, 64)
        def forward(self, x):                     # x (N, T, I)
            h, c = self.cell(x[:, 0])
            for t in range(1, x.shape[1]):
                h, c = self.cell(x[:, t], (h, c))
            return h

fastnn.Trainer slices the first axis of x as the batch: with batch_first=False, transpose inside forward
(x.transpose(0, 1)) or build the layer with batch_first=True; the kernels run time-major either way.
"""
import math

import numpy as np

from .. import init, ops
from ..random import generator
from ._checks import as_float_array, require_forward
from .module import Module, Parameter

__all__ = ["RNN", "LSTM", "GRU", "GatedFeedbackRNN", "RNNCell", "LSTMCell", "GRUCell"]

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


class _RNNBase(Module):
    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, variational_dropout=0.0):
        super().__init__()
        name = type(self).__name__
        if int(input_size) <= 0 or int(hidden_size) <= 0 or int(num_layers) <= 0:
            raise ValueError(f"{name}: input_size, hidden_size and num_layers must be positive, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        for what, p in (("dropout", dropout), ("variational_dropout", variational_dropout)):
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"{name}: {what} must be in [0, 1), got {p}")
        self.mode = mode
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.bias, self.batch_first, self.bidirectional = bool(bias), bool(batch_first), bool(bidirectional)
        self.dropout, self.variational_dropout = float(dropout), float(variational_dropout)
        D, H, G = self.num_directions, self.hidden_size, _GATES[mode]
        bound = 1.0 / math.sqrt(H)
        cells = []
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else D * H
            for d in range(D):
                sfx = f"_l{k}" + ("_reverse" if d else "")
                shapes = [("weight_ih", (G * H, in_k)), ("weight_hh", (G * H, H))]
                if self.bias:
                    shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
                params = []
                for pname, shape in shapes:  # PyTorch's order and init: every tensor U(±1/√H)
                    p = Parameter(np.empty(shape, np.float32))
                    init.uniform_(p, -bound, bound)
                    setattr(self, pname + sfx, p)
                    params.append(p)
                cells.append(tuple(params) + (None, None) * (not self.bias))
        self._cells = cells  # per (layer, direction): (w_ih, w_hh, b_ih, b_hh)
        self._cache = None
        self.grad_hx = None

    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("variational_dropout", 0.0)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s

    # -- helpers -----------------------------------------------------------------------------------
    def _state(self, value, what, N, unbatched, dtype):
        """An initial state (L·D, N, H) as a C-contiguous array of dtype, zeros for None."""
        shape = (self.num_layers * self.num_directions, N, self.hidden_size)
        if value is None:
            return np.zeros(shape, dtype)
        value = as_float_array(self, value, dtype, what)
        expected = (shape[0], shape[2]) if unbatched else shape
        if value.shape != expected:
            raise ValueError(f"{self!r}: {what} must have shape {expected}, got {value.shape}")
        return np.ascontiguousarray(value.reshape(shape))

    def _mask(self, shape, p, dtype):
        keep = generator().random(shape, dtype=np.float32) >= p
        return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, x, hx=None):
        dtype = self.weight_ih_l0.data.dtype
        x = as_float_array(self, x, dtype)
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            expected = "(N, T, I)" if self.batch_first else "(T, N, I)"
            raise ValueError(f"{self!r}: expected input of shape {expected.replace('I', str(self.input_size))} "
                             f"or unbatched (T, {self.input_size}), got {x.shape}")
        if not ops.all_finite(x):
            raise ValueError(f"{self!r}: input of shape {x.shape} contains NaN or infinity")
        unbatched = x.ndim == 2
        if unbatched:
            x = x[:, None, :]
        elif self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        T, N = x.shape[0], x.shape[1]
        lstm = self.mode == "LSTM"
        if lstm:
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise ValueError(f"{self!r}: hx must be a tuple (h0, c0)")
            h0 = self._state(None if hx is None else hx[0], "h0", N, unbatched, dtype)
            c0 = self._state(None if hx is None else hx[1], "c0", N, unbatched, dtype)
        else:
            h0 = self._state(hx, "h0", N, unbatched, dtype)
            c0 = None
        D, H = self.num_directions, self.hidden_size
        train = self.training
        h_n = np.empty_like(h0)
        c_n = np.empty_like(h0) if lstm else None
        layers = []
        inp = x
        for k in range(self.num_layers):
            vmask = None
            if train and self.variational_dropout > 0:
                vmask = self._mask((N, inp.shape[2]), self.variational_dropout, dtype)
                inp = inp * vmask
            out = np.empty((T, N, D * H), dtype)
            saved = []
            for d in range(D):
                idx = k * D + d
                w_ih, w_hh, b_ih, b_hh = self._cells[idx]
                hn, cn, s = ops.rnn_forward(self.mode, inp, w_ih.data, w_hh.data,
                                              None if b_ih is None else b_ih.data,
                                              None if b_hh is None else b_hh.data, h0[idx],
                                              c0[idx] if lstm else None, out, d * H, d == 1)
                h_n[idx] = hn
                if lstm:
                    c_n[idx] = cn
                saved.append(s)
            dmask = None
            if train and self.dropout > 0 and k < self.num_layers - 1:
                dmask = self._mask(out.shape, self.dropout, dtype)
                out = out * dmask
            layers.append((inp, saved, vmask, dmask))
            inp = out
        self._cache = (layers, unbatched, (T, N))
        if unbatched:
            out, h_n = out[:, 0], h_n[:, 0]
            c_n = c_n[:, 0] if lstm else None
        elif self.batch_first:
            out = out.transpose(1, 0, 2)
        return (out, (h_n, c_n)) if lstm else (out, h_n)

    # -- backward ----------------------------------------------------------------------------------
    def _backward(self, grad_output, grad_hn, grad_cn, need_input_grad):
        """dx (None unless need_input_grad); dL/dh0 (and dc0) go to self.grad_hx."""
        require_forward(self, self._cache)
        layers, unbatched, (T, N) = self._cache
        dtype = self.weight_ih_l0.data.dtype
        D, H = self.num_directions, self.hidden_size
        g = None
        if grad_output is not None:
            g = as_float_array(self, grad_output, dtype, "grad_output")
            expected = (T, D * H) if unbatched else (N, T, D * H) if self.batch_first else (T, N, D * H)
            if g.shape != expected:
                raise ValueError(f"{self!r}: grad_output has shape {g.shape}, but the forward output had shape "
                                 f"{expected}")
            if unbatched:
                g = g[:, None, :]
            elif self.batch_first:
                g = np.ascontiguousarray(g.transpose(1, 0, 2))
        ghn = None if grad_hn is None else self._state(grad_hn, "grad_hn", N, unbatched, dtype)
        gcn = None if grad_cn is None or self.mode != "LSTM" else self._state(grad_cn, "grad_cn", N, unbatched,
                                                                               dtype)
        dh0 = np.empty((self.num_layers * D, N, H), dtype)
        dc0 = np.empty_like(dh0) if self.mode == "LSTM" else None
        for k in range(self.num_layers - 1, -1, -1):
            inp, saved, vmask, _ = layers[k]
            need_dx = k > 0 or need_input_grad
            dx = np.empty(inp.shape, dtype) if need_dx else None
            for d in range(D):
                idx = k * D + d
                w_ih, w_hh, b_ih, b_hh = self._cells[idx]
                grads = []
                for p in (w_ih, w_hh, b_ih, b_hh):  # frozen parameters get no gradient
                    grads.append(p.grad_for_kernel() if p is not None and p.requires_grad else (None, True))
                dh, dc = ops.rnn_backward(
                    self.mode, inp, w_ih.data, w_hh.data, saved[d], g, d * H,
                    None if ghn is None else ghn[idx], None if gcn is None else gcn[idx],
                    grads[0][0], grads[1][0], grads[2][0], grads[3][0],
                    grads[0][1], grads[1][1], grads[2][1], grads[3][1], d == 1, dx, d > 0)
                dh0[idx] = dh
                if dc0 is not None:
                    dc0[idx] = dc
            if dx is not None and vmask is not None:
                dx *= vmask
            if k > 0:
                below_dmask = layers[k - 1][3]
                g = dx if below_dmask is None else dx * below_dmask
            else:
                g = dx
        if unbatched:
            dh0 = dh0[:, 0]
            dc0 = None if dc0 is None else dc0[:, 0]
        self.grad_hx = (dh0, dc0) if self.mode == "LSTM" else dh0
        if g is None:
            return None
        if unbatched:
            return g[:, 0]
        return g.transpose(1, 0, 2) if self.batch_first else g

    def backward_inputs(self, grad_outputs, need_input_grad, num_inputs):
        """Graphs: the gradients of x and of the initial state hx (a tuple (dh0, dc0) for LSTM)."""
        dx = self.backward(*grad_outputs, need_input_grad=need_input_grad)
        return (dx, self.grad_hx)[:num_inputs]


class RNN(_RNNBase):
    r"""Elman recurrent network (PyTorch's RNN), whole sequences in one C++ call per layer and direction.

    .. math:: h_t = \tanh(x_t W_{ih}^T + b_{ih} + h_{t-1} W_{hh}^T + b_{hh})

    (``nonlinearity="relu"``: :math:`\max(\cdot, 0)` instead of tanh). ``forward(x, hx=None)`` returns
    ``(output, h_n)``.

    ``backward(grad_output, grad_hn=None)`` takes the gradient of the output (and of the final state),
    accumulates the parameter gradients and returns the gradient of ``x``; the gradient of the initial state is
    left in ``grad_hx``. Each direction of each layer is one C++ call over the whole sequence.

    Parameters
    ----------
    input_size : int
        Features of each input step, ``I``; > 0.
    hidden_size : int
        Features of the hidden state, ``H``; > 0.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads layer k - 1's output.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation.
    bias : bool, default True
        Learn ``bias_ih`` and ``bias_hh``.
    batch_first : bool, default False
        Input and output are ``(N, T, *)`` instead of ``(T, N, *)``.
    dropout : float in [0, 1), default 0.0
        Dropout on each layer's output except the last's, in training.
    bidirectional : bool, default False
        Run a second direction from the end (``D = 2``); outputs are concatenated.
    variational_dropout : float in [0, 1), default 0.0
        Dropout on each layer's input with one mask for all time steps (Gal and Ghahramani), in training.

    Shape
    -----
    - Input ``x``: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
    - Initial state ``h0``: ``(num_layers * D, N, H)`` (``(num_layers * D, H)`` unbatched); None means zeros.
    - Output: ``(T, N, D * H)`` (batch-first or unbatched alike), and the final state(s) of ``h0``'s shape.
    - Parameters, per layer ``k`` (suffix ``_reverse`` for the second direction): ``weight_ih_l{k}``
      ``(H, I)`` (``(H, D * H)`` for k > 0), ``weight_hh_l{k}`` ``(H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
      ``(H,)``; all initialised from ``U(±1/√H)`` as PyTorch.

    Raises
    ------
    ValueError
        For sizes that are not positive, dropout outside [0, 1), or (forward) an input or state of another
        shape, or holding NaN or infinity (the message names the layer and the shapes).
        An unknown ``nonlinearity`` raises ValueError too.

    See Also
    --------
    LSTM, GRU, RNNCell

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> rnn = fnn.nn.RNN(10, 20, num_layers=2)
    >>> x = np.random.default_rng(0).normal(size=(5, 3, 10)).astype(np.float32)   # (T, N, I)
    >>> out, h_n = rnn(x)
    >>> out.shape, h_n.shape
    ((5, 3, 20), (2, 3, 20))
    >>> rnn.backward(np.ones_like(out)).shape
    (5, 3, 10)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, variational_dropout=0.0):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, variational_dropout)

    def backward(self, grad_output, grad_hn=None, need_input_grad=True):
        return self._backward(grad_output, grad_hn, None, need_input_grad)


class LSTM(_RNNBase):
    r"""Long short-term memory network (PyTorch's LSTM and its gate order i, f, g, o).

    .. math::
       i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
       f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
       g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
       o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
       c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
       h_t &= o_t \odot \tanh(c_t)

    ``forward(x, hx=None)`` with ``hx = (h0, c0)`` returns ``(output, (h_n, c_n))``.

    ``backward(grad_output, grad_hn=None, grad_cn=None)`` takes the gradient of the output (and of the final state),
    accumulates the parameter gradients and returns the gradient of ``x``; the gradient of the initial state is
    left in ``grad_hx`` as ``(dh0, dc0)``. Each direction of each layer is one C++ call over the whole sequence.

    Parameters
    ----------
    input_size : int
        Features of each input step, ``I``; > 0.
    hidden_size : int
        Features of the hidden state, ``H``; > 0.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads layer k - 1's output.
    bias : bool, default True
        Learn ``bias_ih`` and ``bias_hh``.
    batch_first : bool, default False
        Input and output are ``(N, T, *)`` instead of ``(T, N, *)``.
    dropout : float in [0, 1), default 0.0
        Dropout on each layer's output except the last's, in training.
    bidirectional : bool, default False
        Run a second direction from the end (``D = 2``); outputs are concatenated.
    variational_dropout : float in [0, 1), default 0.0
        Dropout on each layer's input with one mask for all time steps (Gal and Ghahramani), in training.

    Shape
    -----
    - Input ``x``: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
    - Initial state ``h0`` and ``c0``: ``(num_layers * D, N, H)`` (``(num_layers * D, H)`` unbatched); None means zeros.
    - Output: ``(T, N, D * H)`` (batch-first or unbatched alike), and the final state(s) of ``h0``'s shape.
    - Parameters, per layer ``k`` (suffix ``_reverse`` for the second direction): ``weight_ih_l{k}``
      ``(4H, I)`` (``(4H, D * H)`` for k > 0), ``weight_hh_l{k}`` ``(4H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
      ``(4H,)``; all initialised from ``U(±1/√H)`` as PyTorch.

    Raises
    ------
    ValueError
        For sizes that are not positive, dropout outside [0, 1), or (forward) an input or state of another
        shape, or holding NaN or infinity (the message names the layer and the shapes).

    See Also
    --------
    GRU, RNN, LSTMCell

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> lstm = fnn.nn.LSTM(8, 16, batch_first=True)
    >>> lstm.weight_ih_l0.shape                      # the four gates stacked: (4 * hidden_size, input_size)
    (64, 8)
    >>> out, (h_n, c_n) = lstm(np.zeros((4, 7, 8), np.float32))   # (N, T, I)
    >>> out.shape, h_n.shape, c_n.shape
    ((4, 7, 16), (1, 4, 16), (1, 4, 16))
    >>> lstm.backward(np.ones_like(out)).shape
    (4, 7, 8)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, variational_dropout=0.0):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         variational_dropout)

    def backward(self, grad_output, grad_hn=None, grad_cn=None, need_input_grad=True):
        return self._backward(grad_output, grad_hn, grad_cn, need_input_grad)


class GRU(_RNNBase):
    r"""Gated recurrent unit network (PyTorch's GRU and its gate order r, z, n).

    .. math::
       r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
       z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
       n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
       h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    ``forward(x, hx=None)`` returns ``(output, h_n)``.

    ``backward(grad_output, grad_hn=None)`` takes the gradient of the output (and of the final state),
    accumulates the parameter gradients and returns the gradient of ``x``; the gradient of the initial state is
    left in ``grad_hx``. Each direction of each layer is one C++ call over the whole sequence.

    Parameters
    ----------
    input_size : int
        Features of each input step, ``I``; > 0.
    hidden_size : int
        Features of the hidden state, ``H``; > 0.
    num_layers : int, default 1
        Stacked layers; layer k > 0 reads layer k - 1's output.
    bias : bool, default True
        Learn ``bias_ih`` and ``bias_hh``.
    batch_first : bool, default False
        Input and output are ``(N, T, *)`` instead of ``(T, N, *)``.
    dropout : float in [0, 1), default 0.0
        Dropout on each layer's output except the last's, in training.
    bidirectional : bool, default False
        Run a second direction from the end (``D = 2``); outputs are concatenated.
    variational_dropout : float in [0, 1), default 0.0
        Dropout on each layer's input with one mask for all time steps (Gal and Ghahramani), in training.

    Shape
    -----
    - Input ``x``: ``(T, N, I)``, ``(N, T, I)`` with ``batch_first``, or unbatched ``(T, I)``.
    - Initial state ``h0``: ``(num_layers * D, N, H)`` (``(num_layers * D, H)`` unbatched); None means zeros.
    - Output: ``(T, N, D * H)`` (batch-first or unbatched alike), and the final state(s) of ``h0``'s shape.
    - Parameters, per layer ``k`` (suffix ``_reverse`` for the second direction): ``weight_ih_l{k}``
      ``(3H, I)`` (``(3H, D * H)`` for k > 0), ``weight_hh_l{k}`` ``(3H, H)``, ``bias_ih_l{k}``, ``bias_hh_l{k}``
      ``(3H,)``; all initialised from ``U(±1/√H)`` as PyTorch.

    Raises
    ------
    ValueError
        For sizes that are not positive, dropout outside [0, 1), or (forward) an input or state of another
        shape, or holding NaN or infinity (the message names the layer and the shapes).

    See Also
    --------
    LSTM, RNN, GRUCell

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> gru = fnn.nn.GRU(4, 6, bidirectional=True)
    >>> out, h_n = gru(np.zeros((3, 2, 4), np.float32))
    >>> out.shape, h_n.shape                          # both directions: D = 2
    ((3, 2, 12), (2, 2, 6))
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, variational_dropout=0.0):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         variational_dropout)

    def backward(self, grad_output, grad_hn=None, need_input_grad=True):
        return self._backward(grad_output, grad_hn, None, need_input_grad)


_lin_fwd, _lin_bwd = ops.linear_forward, ops.linear_backward
_act_fwd, _act_bwd = ops.activation_forward, ops.activation_backward
_TANH, _SIGMOID = ops.Activation.tanh, ops.Activation.sigmoid


class _GradSink:
    """One parameter's gradient for a sequence of kernel calls: the first call writes with the parameter's own
    accumulate flag (lazy zero_grad), later ones add to it; (None, True) for a frozen parameter."""

    __slots__ = ("param", "buf", "started")

    def __init__(self, param):
        self.param, self.buf, self.started = param, None, False

    def __call__(self):
        p = self.param
        if not p.requires_grad:
            return None, True
        if self.started:
            return self.buf, True
        self.buf, accumulate = p.grad_for_kernel()
        self.started = True
        return self.buf, accumulate


class GatedFeedbackRNN(Module):
    r"""Gated-feedback RNN (Chung et al. 2015): stacked tanh layers whose previous states all feed each other.

    Every layer's previous state feeds every layer through learned scalar global reset gates:

    .. math::
       g^{i \to j} &= \sigma(w_g^{i \to j} \cdot h_t^{j-1} + u_g^{i \to j} \cdot h^*_{t-1} + b_g^{i \to j}) \\
       h_t^j &= \tanh\Big(W^j h_t^{j-1} + b^j + \sum_i g^{i \to j}\, U^{i \to j} h_{t-1}^i\Big)

    with :math:`h^*` all layers' states concatenated and :math:`h_t^0 = x_t`. With all gates open and
    :math:`U^{i \to j} = 0` for :math:`i \ne j` it is a stacked tanh RNN. ``forward(x, h0=None)`` returns
    ``(output of the top layer, h_n)``; ``backward(grad_output, grad_hn=None)`` returns the gradient of ``x``
    and leaves that of ``h0`` in ``grad_hx``.

    Every matrix product is a fastnn GEMM kernel call (layer 1's input projections for all steps are one GEMM);
    the loop over time steps and layers runs in Python, since the layers are coupled at every step. Results are
    bit-identical for any thread count.

    Parameters
    ----------
    input_size : int
        Features of each input step, ``I``; > 0.
    hidden_size : int
        Features of each layer's state, ``H``; > 0.
    num_layers : int, default 2
        Stacked layers ``L``.
    batch_first : bool, default False
        Input and output are ``(N, T, *)`` instead of ``(T, N, *)``.

    Shape
    -----
    - Input ``x``: ``(T, N, I)`` (``(N, T, I)`` with ``batch_first``), or unbatched ``(T, I)``.
    - ``h0``: ``(L, N, H)``; None means zeros.
    - Output: ``(T, N, H)`` and ``h_n`` ``(L, N, H)``.
    - Parameters of layer j: ``weight_ih_l{j}`` ``(H, in_j)``, ``bias_l{j}`` ``(H,)``, ``weight_hh_l{j}``
      ``(H, L * H)`` (the :math:`U^{i \to j}` side by side), ``gate_weight_ih_l{j}`` ``(L, in_j)``,
      ``gate_weight_hh_l{j}`` ``(L, L * H)``, ``gate_bias_l{j}`` ``(L,)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, or (forward) an input or state of another shape.

    See Also
    --------
    RNN, LSTM

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> gf = fnn.nn.GatedFeedbackRNN(5, 8, num_layers=3)
    >>> gf.weight_hh_l0.shape, gf.gate_weight_hh_l0.shape
    ((8, 24), (3, 24))
    >>> out, h_n = gf(np.zeros((6, 2, 5), np.float32))
    >>> out.shape, h_n.shape
    ((6, 2, 8), (3, 2, 8))
    >>> gf.backward(np.ones_like(out)).shape
    (6, 2, 5)
    """

    def __init__(self, input_size, hidden_size, num_layers=2, batch_first=False):
        super().__init__()
        if int(input_size) <= 0 or int(hidden_size) <= 0 or int(num_layers) <= 0:
            raise ValueError(f"GatedFeedbackRNN: input_size, hidden_size and num_layers must be positive, got "
                             f"{input_size}, {hidden_size}, {num_layers}")
        self.input_size, self.hidden_size, self.num_layers = int(input_size), int(hidden_size), int(num_layers)
        self.batch_first = bool(batch_first)
        L, H = self.num_layers, self.hidden_size
        bound = 1.0 / math.sqrt(H)
        for j in range(L):
            in_j = self.input_size if j == 0 else H
            for name, shape in (("weight_ih", (H, in_j)), ("bias", (H,)), ("weight_hh", (H, L * H)),
                                ("gate_weight_ih", (L, in_j)), ("gate_weight_hh", (L, L * H)), ("gate_bias", (L,))):
                p = Parameter(np.empty(shape, np.float32))
                init.uniform_(p, -bound, bound)
                setattr(self, f"{name}_l{j}", p)
        self._cache = None
        self.grad_hx = None

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        return s + (", batch_first=True" if self.batch_first else "")

    def _layer(self, j):
        return [getattr(self, f"{n}_l{j}") for n in ("weight_ih", "bias", "weight_hh", "gate_weight_ih",
                                                      "gate_weight_hh", "gate_bias")]

    def forward(self, x, h0=None):
        dtype = self.weight_ih_l0.data.dtype
        x = as_float_array(self, x, dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            expected = "(N, T, I)" if self.batch_first else "(T, N, I)"
            raise ValueError(f"{self!r}: expected input of shape {expected.replace('I', str(self.input_size))}, "
                             f"got {x.shape}")
        if self.batch_first:
            x = np.ascontiguousarray(x.transpose(1, 0, 2))
        T, N = x.shape[:2]
        L, H = self.num_layers, self.hidden_size
        if h0 is None:
            h = np.zeros((L, N, H), dtype)
        else:
            h = as_float_array(self, h0, dtype, "h0")
            if h.shape != (L, N, H):
                raise ValueError(f"{self!r}: h0 must have shape {(L, N, H)}, got {h.shape}")
        params = [[p.data for p in self._layer(j)] for j in range(L)]
        w0, b0, _, wg0, _, bg0 = params[0]
        x2 = x.reshape(T * N, self.input_size)
        # Layer 1's input projections for all time steps: one GEMM each.
        xw = _lin_fwd(x2, w0, b0, False).reshape(T, N, H)
        xg = _lin_fwd(x2, wg0, bg0, False).reshape(T, N, L)
        out = np.empty((T, N, H), dtype)
        steps = []
        for t in range(T):
            hstar = np.ascontiguousarray(h.transpose(1, 0, 2)).reshape(N, L * H)  # h*_{t−1}
            below = x[t]
            new_h, layers = np.empty_like(h), []
            for j, (w, b, u, wg, ug, bg) in enumerate(params):
                gpre = xg[t] if j == 0 else _lin_fwd(below, wg, bg, False)
                gpre = gpre + _lin_fwd(hstar, ug, None, False)
                g = _act_fwd(_SIGMOID, gpre, 0.0, 0.0)  # [N, L]: gate from layer i into j
                gh = np.ascontiguousarray((h * g.T[:, :, None]).transpose(1, 0, 2)).reshape(N, L * H)
                a = xw[t] if j == 0 else _lin_fwd(below, w, b, False)
                a = a + _lin_fwd(gh, u, None, False)  # Σ_i g^{i→j} U^{i→j} h^i as one GEMM
                new_h[j] = _act_fwd(_TANH, a, 0.0, 0.0)
                layers.append((below, g, gh))
                below = new_h[j]
            steps.append((h, hstar, layers, new_h))
            h = new_h
            out[t] = h[-1]
        self._cache = (x, steps)
        return (out.transpose(1, 0, 2) if self.batch_first else out), h

    def _backward(self, grad_output, grad_hn, need_input_grad):
        require_forward(self, self._cache)
        x, steps = self._cache
        T, N = x.shape[:2]
        L, H = self.num_layers, self.hidden_size
        dtype = x.dtype
        g_out = np.zeros((T, N, H), dtype) if grad_output is None else \
            as_float_array(self, grad_output, dtype, "grad_output")
        expected = (N, T, H) if self.batch_first else (T, N, H)
        if g_out.shape != expected:
            raise ValueError(f"{self!r}: grad_output has shape {g_out.shape}, but the forward output had shape "
                             f"{expected}")
        if self.batch_first:
            g_out = g_out.transpose(1, 0, 2)
        dh = np.zeros((L, N, H), dtype) if grad_hn is None else \
            as_float_array(self, grad_hn, dtype, "grad_hn").copy()
        if dh.shape != (L, N, H):
            raise ValueError(f"{self!r}: grad_hn must have shape {(L, N, H)}, got {dh.shape}")
        params = [[p.data for p in self._layer(j)] for j in range(L)]
        sinks = [[_GradSink(p) for p in self._layer(j)] for j in range(L)]
        # Layer 1's pre-activation gradients for all steps, for one GEMM each after the loop.
        da0 = np.empty((T, N, H), dtype)
        dga0 = np.empty((T, N, L), dtype)
        for t in range(T - 1, -1, -1):
            h_prev, hstar, layers, new_h = steps[t]
            dh[-1] += g_out[t]
            dh_prev = np.zeros_like(dh)
            dhstar = np.zeros((N, L * H), dtype)
            for j in range(L - 1, -1, -1):
                w, b, u, wg, ug, bg = params[j]
                sw, sb, su, swg, sug, sbg = sinks[j]
                below, g, gh = layers[j]
                da = _act_bwd(_TANH, new_h[j], np.ascontiguousarray(dh[j]), 0.0, 0.0)
                dbelow = None
                if j == 0:
                    da0[t] = da
                else:
                    (gw, aw), (gb, ab) = sw(), sb()
                    dbelow = _lin_bwd(da, below, w, gw, gb, True, aw, ab)
                gu, au = su()
                dgh = _lin_bwd(da, gh, u, gu, None, True, au, True).reshape(N, L, H)
                dh_prev += dgh.transpose(1, 0, 2) * g.T[:, :, None]
                dg = np.einsum("nik,ink->ni", dgh, h_prev)  # dL/dg^{i→j} = <U^{i→j}ᵀ da, h^i>
                dga = _act_bwd(_SIGMOID, g, dg, 0.0, 0.0)
                if j == 0:
                    dga0[t] = dga
                else:
                    (gwg, awg), (gbg, abg) = swg(), sbg()
                    dbelow += _lin_bwd(dga, below, wg, gwg, gbg, True, awg, abg)
                gug, aug = sug()
                dhstar += _lin_bwd(dga, hstar, ug, gug, None, True, aug, True)
                if j > 0:
                    dh[j - 1] += dbelow
            dh = dh_prev + dhstar.reshape(N, L, H).transpose(1, 0, 2)
        x2 = x.reshape(T * N, self.input_size)
        sw, sb, _, swg, _, sbg = sinks[0]
        w0, _, _, wg0, _, _ = params[0]
        (gw, aw), (gb, ab) = sw(), sb()
        (gwg, awg), (gbg, abg) = swg(), sbg()
        dx = _lin_bwd(da0.reshape(T * N, H), x2, w0, gw, gb, need_input_grad, aw, ab)
        dxg = _lin_bwd(dga0.reshape(T * N, L), x2, wg0, gwg, gbg, need_input_grad, awg, abg)
        self.grad_hx = np.ascontiguousarray(dh)
        if dx is None:
            return None
        dx = (dx + dxg).reshape(T, N, self.input_size)
        return dx.transpose(1, 0, 2) if self.batch_first else dx

    def backward(self, grad_output, grad_hn=None, need_input_grad=True):
        return self._backward(grad_output, grad_hn, need_input_grad)

    def backward_inputs(self, grad_outputs, need_input_grad, num_inputs):
        """Graphs: the gradients of x and of h0."""
        dx = self.backward(*grad_outputs, need_input_grad=need_input_grad)
        return (dx, self.grad_hx)[:num_inputs]


# ---------------------------------------------------------------------------------------------------------
# single steps
# ---------------------------------------------------------------------------------------------------------
class _CellBase(Module):
    """One time step of an RNN/LSTM/GRU layer: the sequence kernels of rnn_forward/rnn_backward with T = 1.

    forward(x, hx=None): x (N, input_size) or unbatched (input_size,); hx the previous state of the same
    batch shape (LSTMCell: a tuple (h, c)), None meaning zeros. backward(grad_h[, grad_c]) returns the
    gradient of x and leaves that of hx in `grad_hx` (LSTMCell: (dh, dc)); parameter gradients accumulate."""

    _mode = None

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        name = type(self).__name__
        for what, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) <= 0:
                raise ValueError(f"{name}: {what} must be a positive int, got {v!r}")
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bool(bias)
        G, H = _GATES[self._mode], self.hidden_size
        bound = 1.0 / math.sqrt(H)
        shapes = [("weight_ih", (G * H, self.input_size)), ("weight_hh", (G * H, H))]
        if self.bias:
            shapes += [("bias_ih", (G * H,)), ("bias_hh", (G * H,))]
        else:
            self.bias_ih = self.bias_hh = None
        for pname, shape in shapes:  # PyTorch's order and init: every tensor U(±1/√H)
            p = Parameter(np.empty(shape, np.float32))
            init.uniform_(p, -bound, bound)
            setattr(self, pname, p)
        self._cache = None
        self.grad_hx = None

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if not self.bias:
            s += ", bias=False"
        if self._mode == "RNN_RELU":
            s += ", nonlinearity='relu'"
        return s

    def _state(self, value, what, N, unbatched, dtype):
        H = self.hidden_size
        if value is None:
            return np.zeros((N, H), dtype)
        value = as_float_array(self, value, dtype, what)
        expected = (H,) if unbatched else (N, H)
        if value.shape != expected:
            raise ValueError(f"{self!r}: {what} must have shape {expected} for input of shape "
                             f"{(self.input_size,) if unbatched else (N, self.input_size)}, got {value.shape}")
        return np.ascontiguousarray(value.reshape(N, H))

    def forward(self, x, hx=None):
        dtype = self.weight_ih.data.dtype
        x = as_float_array(self, x, dtype)
        if x.ndim not in (1, 2) or x.shape[-1] != self.input_size:
            raise ValueError(f"{self!r}: expected input of shape (N, {self.input_size}) or unbatched "
                             f"({self.input_size},), got {x.shape}")
        if not ops.all_finite(x):
            raise ValueError(f"{self!r}: input of shape {x.shape} contains NaN or infinity")
        unbatched = x.ndim == 1
        x3 = np.ascontiguousarray(x.reshape(1, -1, self.input_size))
        N = x3.shape[1]
        lstm = self._mode == "LSTM"
        if lstm:
            if hx is not None and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise ValueError(f"{self!r}: hx must be a tuple (h, c)")
            h0 = self._state(None if hx is None else hx[0], "h", N, unbatched, dtype)
            c0 = self._state(None if hx is None else hx[1], "c", N, unbatched, dtype)
        else:
            if isinstance(hx, (tuple, list)):
                raise ValueError(f"{self!r}: hx must be one array (N, {self.hidden_size}), got a "
                                 f"{type(hx).__name__}")
            h0, c0 = self._state(hx, "hx", N, unbatched, dtype), None
        b_ih = None if self.bias_ih is None else self.bias_ih.data
        b_hh = None if self.bias_hh is None else self.bias_hh.data
        out = np.empty((1, N, self.hidden_size), dtype)
        _, c, saved = ops.rnn_forward(self._mode, x3, self.weight_ih.data, self.weight_hh.data, b_ih, b_hh, h0, c0,
                                      out, 0, False)
        self._cache = (x3, saved, unbatched)
        h = out[0]
        if unbatched:
            h, c = h[0], (None if c is None else c[0])
        return (h, c) if lstm else h

    def _backward(self, grad_h, grad_c, need_input_grad):
        require_forward(self, self._cache)
        x3, saved, unbatched = self._cache
        dtype = x3.dtype
        N, H = x3.shape[1], self.hidden_size
        gh = None if grad_h is None else self._state(grad_h, "grad_h", N, unbatched, dtype)
        gc = None if grad_c is None else self._state(grad_c, "grad_c", N, unbatched, dtype)
        params = (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        grads = [p.grad_for_kernel() if p is not None and p.requires_grad else (None, True) for p in params]
        dx = np.empty(x3.shape, dtype) if need_input_grad else None
        dh, dc = ops.rnn_backward(self._mode, x3, self.weight_ih.data, self.weight_hh.data, saved, None, 0, gh, gc,
                                  grads[0][0], grads[1][0], grads[2][0], grads[3][0],
                                  grads[0][1], grads[1][1], grads[2][1], grads[3][1], False, dx, False)
        if unbatched:
            dh, dc = dh[0], (None if dc is None else dc[0])
            dx = None if dx is None else dx[0, 0]
        else:
            dx = None if dx is None else dx[0]
        self.grad_hx = (dh, dc) if self._mode == "LSTM" else dh
        return dx

    def backward_inputs(self, grad_outputs, need_input_grad, num_inputs):
        """Graphs: the gradients of x and of the state hx (a tuple (dh, dc) for LSTMCell)."""
        dx = self.backward(*grad_outputs, need_input_grad=need_input_grad)
        return (dx, self.grad_hx)[:num_inputs]


class RNNCell(_CellBase):
    r"""One step of an Elman RNN (PyTorch's RNNCell).

    .. math:: h' = \tanh(x W_{ih}^T + b_{ih} + h W_{hh}^T + b_{hh})

    (``nonlinearity="relu"``: :math:`\max(\cdot, 0)`). ``forward(x, hx=None)`` returns ``h'``;
    ``backward(grad_h)`` returns the gradient of ``x``, leaves that of ``hx`` in ``grad_hx`` and accumulates the
    parameter gradients. The step is the sequence kernel with T = 1.

    Parameters
    ----------
    input_size : int
        Features of the input, ``I``; > 0.
    hidden_size : int
        Features of the state, ``H``; > 0.
    bias : bool, default True
        Learn ``bias_ih`` and ``bias_hh``.
    nonlinearity : {"tanh", "relu"}, default "tanh"
        The activation.

    Shape
    -----
    - Input ``x``: ``(N, I)`` or unbatched ``(I,)``.
    - State ``hx``: ``(N, H)`` (``(H,)`` unbatched); None means zeros.
    - Output: the next state, of the state's shape.
    - Parameters: ``weight_ih`` ``(H, I)``, ``weight_hh`` ``(H, H)``, ``bias_ih``, ``bias_hh`` ``(H,)``;
      initialised from ``U(±1/√H)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, or (forward) an input or state of another shape, or holding NaN or
        infinity (the message names the layer and the shapes).

    See Also
    --------
    RNN, LSTMCell, GRUCell

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> cell = fnn.nn.RNNCell(3, 5)
    >>> h = None
    >>> for x_t in np.zeros((4, 2, 3), np.float32):      # a hand-written loop over 4 steps
    ...     h = cell(x_t, h)
    >>> h.shape
    (2, 5)
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, bias)

    def backward(self, grad_h, need_input_grad=True):
        return self._backward(grad_h, None, need_input_grad)


class LSTMCell(_CellBase):
    r"""One step of an LSTM (PyTorch's LSTMCell, gates i, f, g, o).

    .. math::
       i &= \sigma(W_{ii} x + b_{ii} + W_{hi} h + b_{hi}), \quad
       f = \sigma(W_{if} x + b_{if} + W_{hf} h + b_{hf}) \\
       g &= \tanh(W_{ig} x + b_{ig} + W_{hg} h + b_{hg}), \quad
       o = \sigma(W_{io} x + b_{io} + W_{ho} h + b_{ho}) \\
       c' &= f \odot c + i \odot g, \quad h' = o \odot \tanh(c')

    ``forward(x, hx=None)`` with ``hx = (h, c)`` returns ``(h', c')``; ``backward(grad_h, grad_c=None)``
    returns the gradient of ``x`` and leaves ``(dh, dc)`` in ``grad_hx``.

    Parameters
    ----------
    input_size : int
        Features of the input, ``I``; > 0.
    hidden_size : int
        Features of the state, ``H``; > 0.
    bias : bool, default True
        Learn ``bias_ih`` and ``bias_hh``.

    Shape
    -----
    - Input ``x``: ``(N, I)`` or unbatched ``(I,)``.
    - State ``hx = (h, c)``, each: ``(N, H)`` (``(H,)`` unbatched); None means zeros.
    - Output: the next state, of the state's shape.
    - Parameters: ``weight_ih`` ``(4H, I)``, ``weight_hh`` ``(4H, H)``, ``bias_ih``, ``bias_hh`` ``(4H,)``;
      initialised from ``U(±1/√H)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, or (forward) an input or state of another shape, or holding NaN or
        infinity (the message names the layer and the shapes).

    See Also
    --------
    LSTM, GRUCell

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> cell = fnn.nn.LSTMCell(3, 5)
    >>> h, c = cell(np.zeros((2, 3), np.float32))
    >>> h.shape, c.shape
    ((2, 5), (2, 5))
    >>> cell.backward(np.ones_like(h)).shape
    (2, 3)
    """

    _mode = "LSTM"

    def backward(self, grad_h, grad_c=None, need_input_grad=True):
        return self._backward(grad_h, grad_c, need_input_grad)


class GRUCell(_CellBase):
    r"""One step of a GRU (PyTorch's GRUCell, gates r, z, n).

    .. math::
       r &= \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \quad
       z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}) \\
       n &= \tanh(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})), \quad h' = (1 - z) \odot n + z \odot h

    ``forward(x, hx=None)`` returns ``h'``; ``backward(grad_h)`` returns the gradient of ``x`` and leaves that
    of ``hx`` in ``grad_hx``.

    Parameters
    ----------
    input_size : int
        Features of the input, ``I``; > 0.
    hidden_size : int
        Features of the state, ``H``; > 0.
    bias : bool, default True
        Learn ``bias_ih`` and ``bias_hh``.

    Shape
    -----
    - Input ``x``: ``(N, I)`` or unbatched ``(I,)``.
    - State ``hx``: ``(N, H)`` (``(H,)`` unbatched); None means zeros.
    - Output: the next state, of the state's shape.
    - Parameters: ``weight_ih`` ``(3H, I)``, ``weight_hh`` ``(3H, H)``, ``bias_ih``, ``bias_hh`` ``(3H,)``;
      initialised from ``U(±1/√H)``.

    Raises
    ------
    ValueError
        For sizes that are not positive, or (forward) an input or state of another shape, or holding NaN or
        infinity (the message names the layer and the shapes).

    See Also
    --------
    GRU, LSTMCell

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> cell = fnn.nn.GRUCell(3, 5)
    >>> h = cell(np.ones((2, 3), np.float32), np.zeros((2, 5), np.float32))
    >>> h.shape, cell.weight_ih.shape
    ((2, 5), (15, 3))
    """

    _mode = "GRU"

    def backward(self, grad_h, need_input_grad=True):
        return self._backward(grad_h, None, need_input_grad)
