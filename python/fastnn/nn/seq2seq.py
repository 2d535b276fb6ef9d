"""Seq2Seq encoder–decoder with additive attention.

src tokens -> Embedding -> bidirectional GRU/LSTM encoder (batch_first) -> keys h_j [N, S, D·H].
Decoder state s_0 = tanh(W_b [h_n forward; h_n backward] + b_b). Step t (teacher forcing in training):
c_t = attention(s_{t−1}, h) ; s_t = cell([embedding(y_{t−1}); c_t], s_{t−1}) ;
logits_t = W_o [s_t; c_t] + b_o.

The decoder cell (PyTorch GRUCell / LSTMCell equations and gate order) is stepped in NumPy, vectorised over
the batch; its weight gradients are summed over all steps with one GEMM each at the end of backward. The
attention projects the keys once per sequence. Parameter names: src_embedding.weight, encoder.* (PyTorch
GRU/LSTM names), bridge.*, attention.*, tgt_embedding.weight, decoder.weight_ih / weight_hh / bias_ih /
bias_hh, out.*.
"""
import math

import numpy as np

from .. import init
from ._checks import as_float_array, require_forward
from .attention import AdditiveAttention
from .embedding import Embedding
from .linear import Linear
from .module import Module, Parameter
from .recurrent import GRU, LSTM

__all__ = ["Seq2Seq"]


def _sigmoid(v):
    return 0.5 * (1.0 + np.tanh(0.5 * v))  # never overflows


class _DecoderCell(Module):
    """GRUCell / LSTMCell parameters (PyTorch names, shapes, gate order and init) with NumPy step math."""

    def __init__(self, mode, input_size, hidden_size):
        super().__init__()
        self.mode, self.input_size, self.hidden_size = mode, int(input_size), int(hidden_size)
        G = 4 if mode == "LSTM" else 3
        bound = 1.0 / math.sqrt(hidden_size)
        for name, shape in (("weight_ih", (G * hidden_size, input_size)), ("weight_hh", (G * hidden_size, hidden_size)),
                            ("bias_ih", (G * hidden_size,)), ("bias_hh", (G * hidden_size,))):
            p = Parameter(np.empty(shape, np.float32))
            init.uniform_(p, -bound, bound)
            setattr(self, name, p)

    def extra_repr(self):
        return f"{self.mode}, {self.input_size}, {self.hidden_size}"

    def step(self, x, h, c):
        H = self.hidden_size
        gi = x @ self.weight_ih.data.T + self.bias_ih.data
        gh = h @ self.weight_hh.data.T + self.bias_hh.data
        if self.mode == "LSTM":
            g = gi + gh
            i, f, o = _sigmoid(g[:, :H]), _sigmoid(g[:, H:2 * H]), _sigmoid(g[:, 3 * H:])
            gg = np.tanh(g[:, 2 * H:3 * H])
            c2 = f * c + i * gg
            tc = np.tanh(c2)
            return o * tc, c2, (x, h, c, i, f, gg, o, tc)
        r = _sigmoid(gi[:, :H] + gh[:, :H])
        z = _sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        ghn = gh[:, 2 * H:]
        n = np.tanh(gi[:, 2 * H:] + r * ghn)
        return n + z * (h - n), None, (x, h, r, z, n, ghn)

    def step_backward(self, dh, dc, cache):
        """(dx, dh_prev, dc_prev, dgi, dgh): the gate gradients are kept for the weight gradients."""
        if self.mode == "LSTM":
            x, h, c, i, f, gg, o, tc = cache
            dc = dc + dh * o * (1 - tc * tc)
            dgi = np.concatenate([dc * gg * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - gg * gg),
                                  dh * tc * o * (1 - o)], axis=1)
            dgh, dc_prev = dgi, dc * f
        else:
            x, h, r, z, n, ghn = cache
            dnp = dh * (1 - z) * (1 - n * n)
            drp = dnp * ghn * r * (1 - r)
            dzp = dh * (h - n) * z * (1 - z)
            dgi = np.concatenate([drp, dzp, dnp], axis=1)
            dgh = np.concatenate([drp, dzp, dnp * r], axis=1)
            dc_prev = None
        dx = dgi @ self.weight_ih.data
        dh_prev = dgh @ self.weight_hh.data
        if self.mode != "LSTM":
            dh_prev += dh * z
        return dx, dh_prev, dc_prev, dgi, dgh

    def accumulate(self, xs, hs, dgis, dghs):
        """Weight gradients over all steps: stacked (T·N) rows, one GEMM per weight."""
        X, Hp, DI, DH = (np.concatenate(a, axis=0) for a in (xs, hs, dgis, dghs))
        if self.weight_ih.requires_grad:
            self.weight_ih.grad += DI.T @ X
        if self.weight_hh.requires_grad:
            self.weight_hh.grad += DH.T @ Hp
        if self.bias_ih.requires_grad:
            self.bias_ih.grad += DI.sum(axis=0)
        if self.bias_hh.requires_grad:
            self.bias_hh.grad += DH.sum(axis=0)


class Seq2Seq(Module):
    """A sequence-to-sequence model: a recurrent encoder and an attention decoder (Bahdanau et al.).

    ``forward(src, tgt_in)`` gives logits with teacher forcing (``tgt_in`` is the target shifted right,
    starting with BOS); source positions equal to ``src_pad_idx`` are masked out of the attention.
    ``backward(grad_logits)`` fills every parameter's gradient (and returns None: the inputs are integers).
    ``generate(src, max_len, bos, eos=None)`` decodes greedily: int64 ``(N, L)`` tokens, BOS excluded,
    ``L <= max_len``; with ``eos``, decoding stops once every row has produced it, and positions after a row's
    eos are eos.

    Parameters
    ----------
    src_vocab, tgt_vocab : int
        Vocabulary sizes.
    embed_dim : int
        Size of the token embeddings.
    hidden_dim : int
        Size of the recurrent states.
    cell : {"gru", "lstm"}, default "gru"
        The recurrent cell of encoder and decoder.
    bidirectional_encoder : bool, default True
        A bidirectional encoder.
    attention_dim : int or None, default None
        Size of the attention's scoring layer (``hidden_dim`` when None).
    src_pad_idx, tgt_pad_idx : int or None, default None
        Padding indices.

    Shape
    -----
    - Input: ``src`` ``(N, S)`` int, ``tgt_in`` ``(N, T)`` int.
    - Output: logits ``(N, T, tgt_vocab)``.

    Raises
    ------
    ValueError
        For an unknown cell.

    See Also
    --------
    AdditiveAttention, GRU, LSTM

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> _ = fnn.manual_seed(0)
    >>> model = fnn.nn.Seq2Seq(src_vocab=12, tgt_vocab=10, embed_dim=8, hidden_dim=16)
    >>> src = np.array([[3, 4, 5, 0]]); tgt_in = np.array([[1, 6, 7]])
    >>> model(src, tgt_in).shape
    (1, 3, 10)
    >>> model.generate(src, max_len=4, bos=1).shape
    (1, 4)
    """

    def __init__(self, src_vocab, tgt_vocab, embed_dim, hidden_dim, cell="gru", bidirectional_encoder=True,
                 attention_dim=None, src_pad_idx=None, tgt_pad_idx=None):
        super().__init__()
        cell = str(cell).lower()
        if cell not in ("gru", "lstm"):
            raise ValueError(f"Seq2Seq: cell must be 'gru' or 'lstm', got {cell!r}")
        self.cell, self.hidden_dim, self.embed_dim = cell, int(hidden_dim), int(embed_dim)
        self.src_vocab, self.tgt_vocab = int(src_vocab), int(tgt_vocab)
        self.src_pad_idx = src_pad_idx
        D = 2 if bidirectional_encoder else 1
        self.num_directions = D
        E, H = self.embed_dim, self.hidden_dim
        K = D * H
        self.src_embedding = Embedding(src_vocab, E, padding_idx=src_pad_idx)
        rnn = LSTM if cell == "lstm" else GRU
        self.encoder = rnn(E, H, batch_first=True, bidirectional=bool(bidirectional_encoder))
        self.bridge = Linear(K, H)
        self.attention = AdditiveAttention(H, K, int(attention_dim or H))
        self.tgt_embedding = Embedding(tgt_vocab, E, padding_idx=tgt_pad_idx)
        self.decoder = _DecoderCell(cell.upper(), E + K, H)
        self.out = Linear(H + K, tgt_vocab)
        self._cache = None

    def extra_repr(self):
        return (f"{self.src_vocab}, {self.tgt_vocab}, {self.embed_dim}, {self.hidden_dim}, cell={self.cell!r}, "
                f"bidirectional_encoder={self.num_directions == 2}")

    def _tokens(self, x, name, vocab):
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"{self!r}: {name} must be an integer array (N, length), got shape {x.shape}")
        return x

    def _encode(self, src):
        src = self._tokens(src, "src", self.src_vocab)
        N = src.shape[0]
        emb = self.src_embedding(src)
        keys, hn = self.encoder(emb)
        h_n = hn[0] if self.cell == "lstm" else hn
        s0 = np.tanh(self.bridge(np.ascontiguousarray(h_n.transpose(1, 0, 2)).reshape(N, -1)))
        mask = None if self.src_pad_idx is None else src != self.src_pad_idx
        state = self.attention.precompute(keys, mask)
        c0 = np.zeros_like(s0) if self.cell == "lstm" else None
        return state, s0, c0

    def forward(self, src, tgt_in):
        tgt_in = self._tokens(tgt_in, "tgt_in", self.tgt_vocab)
        state, s0, c0 = self._encode(src)
        if tgt_in.shape[0] != s0.shape[0]:
            raise ValueError(f"{self!r}: src and tgt_in have different batch sizes {s0.shape[0]} and "
                             f"{tgt_in.shape[0]}")
        N, T = tgt_in.shape
        H, K = self.hidden_dim, state.keys.shape[2]
        temb = self.tgt_embedding(tgt_in)
        feat = np.empty((N, T, H + K), s0.dtype)
        h, c = s0, c0
        steps = []
        for t in range(T):
            ctx, _, acache = self.attention.step(h, state)
            h, c, ccache = self.decoder.step(np.concatenate([temb[:, t], ctx], axis=1), h, c)
            feat[:, t, :H], feat[:, t, H:] = h, ctx
            steps.append((acache, ccache))
        logits = self.out(feat.reshape(N * T, H + K)).reshape(N, T, -1)
        self._cache = (state, s0, steps, (N, T))
        return logits

    def backward(self, grad_logits):
        require_forward(self, self._cache)
        state, s0, steps, (N, T) = self._cache
        self._cache = None
        dtype = s0.dtype
        g = as_float_array(self, grad_logits, dtype, "grad_logits")
        if g.shape != (N, T, self.tgt_vocab):
            raise ValueError(f"{self!r}: grad_logits has shape {g.shape}, but the forward output had shape "
                             f"{(N, T, self.tgt_vocab)}")
        H, E = self.hidden_dim, self.embed_dim
        dfeat = self.out.backward(g.reshape(N * T, -1)).reshape(N, T, -1)
        dtemb = np.empty((N, T, E), dtype)
        dh = np.zeros((N, H), dtype)
        dc = np.zeros((N, H), dtype) if self.cell == "lstm" else None
        xs, hs, dgis, dghs = [], [], [], []
        for t in range(T - 1, -1, -1):
            acache, ccache = steps[t]
            dh = dh + dfeat[:, t, :H]
            dx, dh, dc, dgi, dgh = self.decoder.step_backward(dh, dc, ccache)
            xs.append(ccache[0]), hs.append(ccache[1]), dgis.append(dgi), dghs.append(dgh)
            dtemb[:, t] = dx[:, :E]
            dh += self.attention.step_backward(dx[:, E:] + dfeat[:, t, H:], None, acache, state)
        self.decoder.accumulate(xs, hs, dgis, dghs)
        dkeys = self.attention.finish_backward(state)
        self.tgt_embedding.backward(dtemb)
        dhcat = self.bridge.backward(dh * (1 - s0 * s0))
        dhn = np.ascontiguousarray(dhcat.reshape(N, self.num_directions, H).transpose(1, 0, 2))
        demb = self.encoder.backward(dkeys, dhn)
        self.src_embedding.backward(demb)
        return None

    def generate(self, src, max_len, bos, eos=None):
        """Greedy decoding: int64 tokens [N, L], BOS excluded."""
        state, h, c = self._encode(src)
        N, H = h.shape
        y = np.full(N, int(bos), np.int64)
        done = np.zeros(N, bool)
        out = []
        W = self.tgt_embedding.weight.data
        for _ in range(int(max_len)):
            ctx, _, _ = self.attention.step(h, state)
            h, c, _ = self.decoder.step(np.concatenate([W[y], ctx], axis=1), h, c)
            logits = np.concatenate([h, ctx], axis=1) @ self.out.weight.data.T + self.out.bias.data
            y = logits.argmax(axis=1)
            if eos is not None:
                y[done] = eos
                done |= y == eos
            out.append(y)
            if eos is not None and done.all():
                break
        self._cache = None
        return np.stack(out, axis=1) if out else np.empty((N, 0), np.int64)
