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
    """Elman RNN: h_t = tanh(x_t W_ihᵀ + b_ih + h_{t−1} W_hhᵀ + b_hh) (nonlinearity='relu': max(·, 0))."""

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
    """LSTM with PyTorch's gates i, f, g, o: c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t).
    forward(x, (h0, c0)) -> (output, (h_n, c_n))."""

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, variational_dropout=0.0):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         variational_dropout)

    def backward(self, grad_output, grad_hn=None, grad_cn=None, need_input_grad=True):
        return self._backward(grad_output, grad_hn, grad_cn, need_input_grad)


class GRU(_RNNBase):
    """GRU with PyTorch's gates r, z, n: n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)), h = (1 − z)⊙n + z⊙h."""

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
    """Gated-feedback RNN (Chung et al. 2015) with tanh units: a stack of num_layers recurrent layers
    in which every layer's previous state feeds every layer, through learned scalar global reset gates:

        g^{i→j} = σ(w_g^{i→j}·h_t^{j−1} + u_g^{i→j}·h*_{t−1} + b_g^{i→j})      h* = all layers' states, concatenated
        h_t^j   = tanh(W^j h_t^{j−1} + b^j + Σ_i g^{i→j} U^{i→j} h_{t−1}^i)      h_t^0 = x_t

    Parameters of layer j: weight_ih_l{j} [H, in_j], bias_l{j} [H], weight_hh_l{j} [H, L·H] (the U^{i→j} side
    by side), gate_weight_ih_l{j} [L, in_j], gate_weight_hh_l{j} [L, L·H], gate_bias_l{j} [L]. With all gates
    open and U^{i→j} = 0 for i ≠ j it is a stacked tanh RNN. forward(x, h0=None) -> (output of the top layer,
    h_n [L, N, H]); backward(grad_output, grad_hn=None) -> grad of x, with grad_hx = dL/dh0.

    Computed with fastnn's own kernels (float32 or float64, the parameters' dtype): every matrix product is a
    `ops.linear_forward` / `ops.linear_backward` call (GEMMs writing the parameter gradients in place,
    lazy zero_grad respected, frozen parameters skipped) and tanh/σ are `ops.activation_forward/backward`;
    only the element-wise gate products and sums stay in NumPy. Layer 1's input projections W^1 x_t + b^1 and
    w_g x_t + b_g for all T steps are one GEMM each over the [T·N, I] input (and so are their gradients in
    BPTT). The gated recurrent sum is one GEMM per layer and step, since g^{i→j} U^{i→j} h^i = U^{i→j}(g^{i→j}
    h^i): U^j [H, L·H] times the gate-scaled h*. The layers are coupled at every step, so the loop over time
    steps and layers runs in Python; results are bit-identical for any thread count."""

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
    """h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh) (nonlinearity='relu': max(·, 0)); PyTorch's RNNCell.
    Parameters weight_ih (H, I), weight_hh (H, H), bias_ih (H,), bias_hh (H,)."""

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh"):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(input_size, hidden_size, bias)

    def backward(self, grad_h, need_input_grad=True):
        return self._backward(grad_h, None, need_input_grad)


class LSTMCell(_CellBase):
    """One LSTM step with PyTorch's gates i, f, g, o: c' = f⊙c + i⊙g, h' = o⊙tanh(c'); returns (h', c').
    Parameters weight_ih (4H, I), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,)."""

    _mode = "LSTM"

    def backward(self, grad_h, grad_c=None, need_input_grad=True):
        return self._backward(grad_h, grad_c, need_input_grad)


class GRUCell(_CellBase):
    """One GRU step with PyTorch's gates r, z, n: n = tanh(W_in x + b_in + r⊙(W_hn h + b_hn)),
    h' = (1 − z)⊙n + z⊙h. Parameters weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,)."""

    _mode = "GRU"

    def backward(self, grad_h, need_input_grad=True):
        return self._backward(grad_h, None, need_input_grad)
