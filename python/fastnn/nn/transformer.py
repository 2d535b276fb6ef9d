"""Multi-head attention and Transformer layers with PyTorch's names, arguments, masks, parameter names and
shapes (a torch state_dict loads with strict=True).

Each is a traced module (it writes no backward): its forward is recorded once per kind of input into a graph
of functional ops, and backward runs that graph in reverse. Attention itself is one fused blockwise C++ kernel
(the multi_head_attention op over kernels/attention_sdpa.hpp, which reads the heads of the projections in
place); self-attention projects Q, K and V with one GEMM (in_proj_weight) whose three thirds the attention reads
directly; the feed-forward block's linear1, activation and dropout are one linear_activation node
(kernels/dense.hpp: one element-wise pass each way after the GEMM, not two); eval mode records no
dropout at all. Dropout masks are hashes of one seed (kernels/dropout.hpp).

Masks follow nn.MultiheadAttention: a bool attn_mask / key_padding_mask says True = may NOT attend (the
opposite of F.scaled_dot_product_attention's bool mask); a float mask is added to the scores. A query whose
every key is masked gets a zero attention output (not NaN) and zero gradients.
"""
import copy
import math

import numpy as np

from .. import init
from . import functional as F
from .containers import ModuleList
from .dropout import Dropout
from .linear import Linear
from .module import Module, Parameter
from .normalization import LayerNorm
from .tracing import checked_shape, record_call

__all__ = ["MultiheadAttention", "TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer",
           "TransformerDecoder", "Transformer"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


def _residual(x, y, dropout, training):
    """x + dropout(y), the residual connection after a block: in training one dropout_add node (a single C++
    pass, the same values as the dropout then the add), in eval a plain add (no dropout node at all)."""
    if not training:
        return x + y
    if type(dropout) is not Dropout:  # a replaced sub-module: call it
        return x + dropout(y)
    return record_call("dropout_add", (x, y), {"p": dropout.p})


def _feed_forward(layer, x):
    """linear2(dropout(activation(linear1(x)))), the feed-forward block before its last dropout. With a plain
    Linear, Dropout and the "relu" or "gelu" activation, linear1, the activation and the dropout are one
    linear_activation node (one C++ call each way, the same values); eval mode records no dropout at all."""
    lin, drop, act = layer.linear1, layer.dropout, layer.activation
    name = "gelu" if act is F.gelu else "relu" if act is F.relu else None
    if name is not None and type(lin) is Linear and type(drop) is Dropout:
        h = record_call("linear_activation", (x, lin.weight, lin.bias),
                        {"activation": name, "p": drop.p, "training": layer.training})
    else:
        h = act(lin(x))
        if layer.training:
            h = drop(h)
    return layer.linear2(h)


def _activation(owner, activation):
    if callable(activation):
        return activation
    fn = _ACTIVATIONS.get(activation)
    if fn is None:
        raise ValueError(f"{owner}: activation must be 'relu', 'gelu' or a callable, got {activation!r}")
    return fn


class MultiheadAttention(Module):
    r"""Multi-head scaled dot-product attention (PyTorch's nn.MultiheadAttention).

    .. math::
       \mathrm{head}_h = \mathrm{softmax}\!\left(\frac{(Q W_h^Q)(K W_h^K)^T}{\sqrt{E / H}} + M\right) V W_h^V,

       \mathrm{out} = [\mathrm{head}_1, \dots, \mathrm{head}_H]\, W^O + b^O

    computed by one fused blockwise C++ kernel; self-attention projects Q, K and V with one GEMM.
    ``forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
    average_attn_weights=True, is_causal=False)`` returns ``(output, weights or None)``: the weights are the
    softmax weights, ``(N, L, S)`` averaged over heads or ``(N, num_heads, L, S)``, and no gradient flows back
    through them; in training with dropout they are the weights after dropout (the ones applied, as PyTorch
    returns them). ``is_causal`` without ``attn_mask`` masks keys after the query.
    Masks follow PyTorch: a bool mask is True where attention is NOT allowed; a float mask is added to the
    scores, and one that is a traced value (a Parameter, or computed in the model) gets its gradient: the
    scores' gradient summed over the dimensions it was broadcast along. A query whose every key is masked gets
    a zero output (not NaN) and zero gradients.

    The layer is traced: its forward is recorded once per kind of input into a graph of functional ops,
    and ``backward(grad_output)`` runs that graph in reverse, returning the gradients of query,
    key and value. Eval mode skips every dropout.

    Parameters
    ----------
    embed_dim : int
        Features ``E`` of the query and output; divisible by ``num_heads``.
    num_heads : int
        Heads ``H``; each attends over ``E / H`` features.
    dropout : float in [0, 1], default 0.0
        Dropout on the attention weights (training only).
    bias : bool, default True
        Learn the input and output projection biases.
    kdim, vdim : int or None, default None
        Features of key and value, when they differ from ``embed_dim``.
    batch_first : bool, default False
        Inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.

    Shape
    -----
    - query ``(L, N, E)``, key ``(S, N, kdim)``, value ``(S, N, vdim)`` (batch first: ``(N, L, E)`` ...),
      or unbatched ``(L, E)``, ``(S, kdim)``, ``(S, vdim)``.
    - attn_mask ``(L, S)`` or ``(N * num_heads, L, S)``; key_padding_mask ``(N, S)``.
    - Output: ``(L, N, E)`` (``(N, L, E)`` batch first); weights ``(N, L, S)`` or ``(N, num_heads, L, S)``.
    - Parameters: ``in_proj_weight`` ``(3E, E)`` and ``in_proj_bias`` ``(3E,)``, or ``q_proj_weight`` ``(E, E)``,
      ``k_proj_weight`` ``(E, kdim)``, ``v_proj_weight`` ``(E, vdim)`` when kdim/vdim differ from E; ``out_proj``
      a Linear(E, E).

    Raises
    ------
    ValueError
        For ``embed_dim`` not divisible by ``num_heads``, dropout outside [0, 1], or (forward) inputs of other
        ranks or feature sizes, or key and value of another batch size or of two lengths (the message names
        the layer and the shapes).

    See Also
    --------
    TransformerEncoderLayer, fastnn.nn.functional.scaled_dot_product_attention

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> mha = fnn.nn.MultiheadAttention(16, num_heads=4, batch_first=True)
    >>> x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)   # (N, L, E)
    >>> out, weights = mha(x, x, x)
    >>> out.shape, weights.shape
    ((2, 5, 16), (2, 5, 5))
    >>> bool(np.allclose(weights.sum(axis=-1), 1.0, atol=1e-5))
    True
    >>> dq, dk, dv = mha.backward(np.ones_like(out))
    >>> dq.shape
    (2, 5, 16)
    """

    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, kdim=None, vdim=None, batch_first=False):
        super().__init__()
        embed_dim, num_heads = int(embed_dim), int(num_heads)
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be positive and divisible by "
                             f"num_heads ({num_heads})")
        if not 0.0 <= float(dropout) <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else int(kdim)
        self.vdim = embed_dim if vdim is None else int(vdim)
        self.dropout, self.batch_first = float(dropout), bool(batch_first)
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        E = embed_dim
        if self._qkv_same_embed_dim:
            self.in_proj_weight = Parameter(np.empty((3 * E, E), np.float32))
            init.xavier_uniform_(self.in_proj_weight)
        else:
            self.q_proj_weight = Parameter(np.empty((E, E), np.float32))
            self.k_proj_weight = Parameter(np.empty((E, self.kdim), np.float32))
            self.v_proj_weight = Parameter(np.empty((E, self.vdim), np.float32))
            for p in (self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
                init.xavier_uniform_(p)
        self.in_proj_bias = Parameter(np.zeros(3 * E, np.float32)) if bias else None
        self.out_proj = Linear(E, E, bias=bias)
        if bias:
            init.zeros_(self.out_proj.bias)

    def extra_repr(self):
        extra = "" if self._qkv_same_embed_dim else f", kdim={self.kdim}, vdim={self.vdim}"
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
                f"{extra}, batch_first={self.batch_first}")

    def _project(self, query, key, value):
        """The projections: (qkv, None, None) for self-attention (one GEMM, the three thirds read in place by the
        attention), else (q, k, v)."""
        E = self.embed_dim
        b = self.in_proj_bias
        bq, bk, bv = (None, None, None) if b is None else (b[:E], b[E:2 * E], b[2 * E:])
        if self._qkv_same_embed_dim:
            w = self.in_proj_weight
            if query is key and key is value:          # self-attention: one GEMM
                return F.linear(query, w, b), None, None
            if key is value:
                kv = F.linear(key, w[E:], None if b is None else b[E:])
                return F.linear(query, w[:E], bq), kv[..., :E], kv[..., E:]
            return F.linear(query, w[:E], bq), F.linear(key, w[E:2 * E], bk), F.linear(value, w[2 * E:], bv)
        return (F.linear(query, self.q_proj_weight, bq), F.linear(key, self.k_proj_weight, bk),
                F.linear(value, self.v_proj_weight, bv))

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        where = f"MultiheadAttention({self.extra_repr()})"
        if query.ndim not in (2, 3) or key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(f"{where}: query, key and value must all be 3-D (batched) or 2-D (unbatched), got "
                             f"shapes {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
        for name, x, d in (("query", query, self.embed_dim), ("key", key, self.kdim), ("value", value, self.vdim)):
            if checked_shape(x)[-1] != d:
                raise ValueError(f"{where}: {name} must end in {d} features, got shape {tuple(x.shape)}")
        unbatched = query.ndim == 2
        same_kv = key is value
        same_qkv = query is key and same_kv
        if unbatched:
            query = query.unsqueeze(0)
            key = query if same_qkv else key.unsqueeze(0)
            value = key if same_kv else value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0) if hasattr(key_padding_mask, "unsqueeze") \
                    else np.expand_dims(key_padding_mask, 0)
        elif not self.batch_first:
            query = query.transpose(0, 1)
            key = query if same_qkv else key.transpose(0, 1)
            value = key if same_kv else value.transpose(0, 1)
        N, L, S = query.shape[0], query.shape[1], key.shape[1]  # Dims when traced: the graph takes any N, L, S
        qs, ks, vs = checked_shape(query), checked_shape(key), checked_shape(value)
        if ks[0] != qs[0] or vs[0] != qs[0] or vs[1] != ks[1]:
            raise ValueError(f"{where}: query, key and value must have one batch size and key and value one "
                             f"sequence length, got shapes {tuple(query.shape)}, {tuple(key.shape)}, "
                             f"{tuple(value.shape)} (batch first)")
        H, D = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        # The kernel's causal path needs no mask array. With a key_padding_mask it cannot serve; an attn_mask given
        # beside is_causal is that causal mask (PyTorch's hint), needed only to return the weights.
        causal = bool(is_causal) and key_padding_mask is None and (attn_mask is None or not need_weights)
        mask = None
        if not causal and (attn_mask is not None or key_padding_mask is not None):
            mask = record_call("attention_mask", (attn_mask, key_padding_mask, N, H, L, S),
                               {"dtype": query.dtype.name, "owner": where})
        elif not causal and is_causal:  # is_causal with only a key_padding_mask: PyTorch needs attn_mask here
            raise ValueError(f"{where}: is_causal=True with a key_padding_mask needs the causal attn_mask too")
        p = self.dropout if self.training else 0.0
        # need_weights in training with dropout: the weights returned are the ones after dropout (PyTorch's), so
        # the attention and the weights share one seed, drawn by a node of the graph at every forward.
        seed = record_call("attention_seed", (query,), {}) if need_weights and p > 0.0 else None
        # (N, L, H·D) projections in, heads read in place; (N, L, H·Dv) out, as out_proj takes it
        out = record_call("multi_head_attention", (q, k, v, mask, seed),
                          {"num_heads": H, "dropout_p": p, "is_causal": causal})
        out = self.out_proj(out)
        weights = None
        if need_weights:
            if k is None:  # the packed self-attention projection: its q and k thirds, by heads
                E = self.embed_dim
                q, k = q[..., :E], q[..., E:2 * E]
            q4 = q.reshape(N, L, H, D).transpose(1, 2)
            k4 = k.reshape(N, S, H, D).transpose(1, 2)
            weights = record_call("attention_weights", (q4, k4, mask, seed), {"is_causal": causal, "dropout_p": p})
            if average_attn_weights:
                weights = weights.mean(1)
            if unbatched:
                weights = weights.squeeze(0)
        if unbatched:
            out = out.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        return out, weights


class TransformerEncoderLayer(Module):
    r"""Transformer encoder layer (PyTorch's nn.TransformerEncoderLayer): self-attention, feed-forward.

    Each block has a residual connection and a LayerNorm after it (``norm_first=False``, the default):

    .. math::
       x &\leftarrow \mathrm{LayerNorm}_1(x + \mathrm{Dropout}(\mathrm{SelfAttn}(x))) \\
       x &\leftarrow \mathrm{LayerNorm}_2(x + \mathrm{Dropout}(\mathrm{FF}(x))), \quad
       \mathrm{FF}(x) = W_2\, \mathrm{Dropout}(\mathrm{act}(W_1 x + b_1)) + b_2

    or before it (``norm_first=True``: :math:`x + \mathrm{Block}(\mathrm{LayerNorm}(x))`).
    ``forward(src, src_mask=None, src_key_padding_mask=None, is_causal=False)`` returns the output.

    The layer is traced: its forward is recorded once per kind of input into a graph of functional ops,
    and ``backward(grad_output)`` runs that graph in reverse, returning the gradient of the input.
    Eval mode skips every dropout.

    Parameters
    ----------
    d_model : int
        Features of each token, ``E``.
    nhead : int
        Attention heads; divides ``d_model``.
    dim_feedforward : int, default 2048
        Width of the feed-forward block.
    dropout : float, default 0.1
        Dropout after attention, inside and after the feed-forward block (training only).
    activation : "relu", "gelu" or callable, default "relu"
        The feed-forward block's activation.
    layer_norm_eps : float, default 1e-5
        The LayerNorms' epsilon.
    batch_first : bool, default False
        Inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.
    norm_first : bool, default False
        LayerNorm before each block (pre-norm) instead of after the residual sum.
    bias : bool, default True
        Learn the biases of the Linear and LayerNorm layers.

    Shape
    -----
    - src: ``(L, N, E)`` (``(N, L, E)`` batch first) or unbatched ``(L, E)``; src_mask ``(L, L)``;
      src_key_padding_mask ``(N, L)``.
    - Output: src's shape.
    - Parameters: ``self_attn`` (a MultiheadAttention), ``linear1`` ``(dim_feedforward, E)``, ``linear2``
      ``(E, dim_feedforward)``, ``norm1``, ``norm2`` (LayerNorm(E)); PyTorch's names, so a torch state_dict loads.

    Raises
    ------
    ValueError
        For an unknown ``activation``, ``d_model`` not divisible by ``nhead``, or (forward) an input of another
        shape.

    See Also
    --------
    TransformerEncoder, TransformerDecoderLayer, MultiheadAttention

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    >>> src = np.random.default_rng(0).normal(size=(3, 7, 16)).astype(np.float32)
    >>> y = layer(src)
    >>> y.shape, layer.backward(np.ones_like(y)).shape
    ((3, 7, 16), (3, 7, 16))
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.activation = _activation("TransformerEncoderLayer", activation)

    # The blocks end before their last dropout: _residual adds it with the residual in one pass.
    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                              is_causal=is_causal)[0]

    def _ff_block(self, x):
        return _feed_forward(self, x)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x, t = src, self.training
        if self.norm_first:
            x = _residual(x, self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal),
                          self.dropout1, t)
            x = _residual(x, self._ff_block(self.norm2(x)), self.dropout2, t)
        else:
            x = self.norm1(_residual(x, self._sa_block(x, src_mask, src_key_padding_mask, is_causal),
                                     self.dropout1, t))
            x = self.norm2(_residual(x, self._ff_block(x), self.dropout2, t))
        return x


class TransformerDecoderLayer(Module):
    """Transformer decoder layer (PyTorch's nn.TransformerDecoderLayer): self-, cross-attention, feed-forward.

    Self-attention over ``tgt``, attention over the encoder's ``memory``, and a feed-forward block, each with a
    residual connection and a LayerNorm after it (or before it with ``norm_first``).
    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False)`` returns the output.

    The layer is traced: its forward is recorded once per kind of input into a graph of functional ops,
    and ``backward(grad_output)`` runs that graph in reverse, returning the gradients of tgt and memory.
    Eval mode skips every dropout.

    Parameters
    ----------
    d_model : int
        Features of each token, ``E``.
    nhead : int
        Attention heads; divides ``d_model``.
    dim_feedforward : int, default 2048
        Width of the feed-forward block.
    dropout : float, default 0.1
        Dropout after attention, inside and after the feed-forward block (training only).
    activation : "relu", "gelu" or callable, default "relu"
        The feed-forward block's activation.
    layer_norm_eps : float, default 1e-5
        The LayerNorms' epsilon.
    batch_first : bool, default False
        Inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.
    norm_first : bool, default False
        LayerNorm before each block (pre-norm) instead of after the residual sum.
    bias : bool, default True
        Learn the biases of the Linear and LayerNorm layers.

    Shape
    -----
    - tgt: ``(T, N, E)`` (``(N, T, E)`` batch first) or unbatched ``(T, E)``; memory ``(S, N, E)`` likewise;
      tgt_mask ``(T, T)``, memory_mask ``(T, S)``; key padding masks ``(N, T)`` and ``(N, S)``.
    - Output: tgt's shape.
    - Parameters: ``self_attn``, ``multihead_attn`` (MultiheadAttention), ``linear1``, ``linear2``, ``norm1``,
      ``norm2``, ``norm3``; PyTorch's names.

    Raises
    ------
    ValueError
        For an unknown ``activation``, ``d_model`` not divisible by ``nhead``, or (forward) inputs of other
        shapes.

    See Also
    --------
    TransformerDecoder, TransformerEncoderLayer

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.TransformerDecoderLayer(d_model=8, nhead=2, dim_feedforward=16, batch_first=True)
    >>> rng = np.random.default_rng(0)
    >>> tgt = rng.normal(size=(2, 4, 8)).astype(np.float32)
    >>> memory = rng.normal(size=(2, 6, 8)).astype(np.float32)
    >>> layer(tgt, memory, tgt_is_causal=True).shape
    (2, 4, 8)
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.linear1 = Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = bool(norm_first)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)
        self.activation = _activation("TransformerDecoderLayer", activation)

    # The blocks end before their last dropout: _residual adds it with the residual in one pass.
    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return self.self_attn(x, x, x, attn_mask=attn_mask, key_padding_mask=key_padding_mask, need_weights=False,
                              is_causal=is_causal)[0]

    def _mha_block(self, x, mem, attn_mask, key_padding_mask, is_causal):
        return self.multihead_attn(x, mem, mem, attn_mask=attn_mask, key_padding_mask=key_padding_mask,
                                   need_weights=False, is_causal=is_causal)[0]

    def _ff_block(self, x):
        return _feed_forward(self, x)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x, t = tgt, self.training
        if self.norm_first:
            x = _residual(x, self._sa_block(self.norm1(x), tgt_mask, tgt_key_padding_mask, tgt_is_causal),
                          self.dropout1, t)
            x = _residual(x, self._mha_block(self.norm2(x), memory, memory_mask, memory_key_padding_mask,
                                             memory_is_causal), self.dropout2, t)
            x = _residual(x, self._ff_block(self.norm3(x)), self.dropout3, t)
        else:
            x = self.norm1(_residual(x, self._sa_block(x, tgt_mask, tgt_key_padding_mask, tgt_is_causal),
                                     self.dropout1, t))
            x = self.norm2(_residual(x, self._mha_block(x, memory, memory_mask, memory_key_padding_mask,
                                                        memory_is_causal), self.dropout2, t))
            x = self.norm3(_residual(x, self._ff_block(x), self.dropout3, t))
        return x


def _clones(layer, n, owner):
    if int(n) <= 0:
        raise ValueError(f"{owner}: num_layers must be positive, got {n}")
    return ModuleList([copy.deepcopy(layer) for _ in range(int(n))])


class TransformerEncoder(Module):
    """A stack of ``num_layers`` copies of an encoder layer (PyTorch's nn.TransformerEncoder), then ``norm``.

    Each copy has its own weights, starting equal to ``encoder_layer``'s. ``forward(src, mask=None,
    src_key_padding_mask=None, is_causal=None)`` returns the output.

    The layer is traced: its forward is recorded once per kind of input into a graph of functional ops,
    and ``backward(grad_output)`` runs that graph in reverse, returning the gradient of the input.
    Eval mode skips every dropout.

    Parameters
    ----------
    encoder_layer : TransformerEncoderLayer
        The layer copied.
    num_layers : int
        How many copies; > 0.
    norm : Module or None, default None
        Applied to the last layer's output (e.g. a LayerNorm).

    Shape
    -----
    - src: as for TransformerEncoderLayer; mask ``(L, L)``; src_key_padding_mask ``(N, L)``.
    - Output: src's shape.
    - Parameters: ``layers.0`` ... ``layers.{num_layers - 1}``, and ``norm``'s.

    Raises
    ------
    ValueError
        For ``num_layers`` < 1, or (forward) an input of another shape.

    See Also
    --------
    TransformerEncoderLayer, Transformer

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.TransformerEncoderLayer(d_model=8, nhead=2, dim_feedforward=16)
    >>> enc = fnn.nn.TransformerEncoder(layer, num_layers=3, norm=fnn.nn.LayerNorm(8))
    >>> len(enc.layers)
    3
    >>> enc(np.zeros((5, 2, 8), np.float32), is_causal=True).shape
    (5, 2, 8)
    """

    def __init__(self, encoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(encoder_layer, num_layers, "TransformerEncoder")
        self.num_layers = int(num_layers)
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, src_mask=mask, src_key_padding_mask=src_key_padding_mask, is_causal=bool(is_causal))
        return x if self.norm is None else self.norm(x)


class TransformerDecoder(Module):
    """A stack of ``num_layers`` copies of a decoder layer (PyTorch's nn.TransformerDecoder), then ``norm``.

    ``forward(tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
    memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False)`` returns the output.

    The layer is traced: its forward is recorded once per kind of input into a graph of functional ops,
    and ``backward(grad_output)`` runs that graph in reverse, returning the gradients of tgt and memory.
    Eval mode skips every dropout.

    Parameters
    ----------
    decoder_layer : TransformerDecoderLayer
        The layer copied (each copy has its own weights, starting equal).
    num_layers : int
        How many copies; > 0.
    norm : Module or None, default None
        Applied to the last layer's output.

    Shape
    -----
    - tgt, memory and masks: as for TransformerDecoderLayer.
    - Output: tgt's shape.
    - Parameters: ``layers.0`` ... ``layers.{num_layers - 1}``, and ``norm``'s.

    Raises
    ------
    ValueError
        For ``num_layers`` < 1, or (forward) inputs of other shapes.

    See Also
    --------
    TransformerDecoderLayer, Transformer

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> layer = fnn.nn.TransformerDecoderLayer(d_model=8, nhead=2, dim_feedforward=16)
    >>> dec = fnn.nn.TransformerDecoder(layer, num_layers=2)
    >>> dec(np.zeros((4, 2, 8), np.float32), np.zeros((6, 2, 8), np.float32)).shape
    (4, 2, 8)
    """

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = _clones(decoder_layer, num_layers, "TransformerDecoder")
        self.num_layers = int(num_layers)
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        x = tgt
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_padding_mask=tgt_key_padding_mask,
                      memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=bool(tgt_is_causal),
                      memory_is_causal=bool(memory_is_causal))
        return x if self.norm is None else self.norm(x)


class Transformer(Module):
    """The encoder-decoder Transformer (PyTorch's nn.Transformer), each stack followed by a LayerNorm.

    ``forward(src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
    tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
    memory_is_causal=False)`` encodes ``src`` into memory and decodes ``tgt`` against it. Token embeddings and
    positional encodings are the caller's, as in PyTorch.

    The layer is traced: its forward is recorded once per kind of input into a graph of functional ops,
    and ``backward(grad_output)`` runs that graph in reverse, returning the gradients of src and tgt.
    Eval mode skips every dropout.

    Parameters
    ----------
    d_model : int, default 512
        Features of each token, ``E``.
    nhead : int, default 8
        Attention heads; divides ``d_model``.
    num_encoder_layers, num_decoder_layers : int, default 6
        Depth of the two stacks.
    dim_feedforward : int, default 2048
        Width of the feed-forward blocks.
    dropout : float, default 0.1
        Dropout in every layer (training only).
    activation : "relu", "gelu" or callable, default "relu"
        The feed-forward blocks' activation.
    layer_norm_eps : float, default 1e-5
        The LayerNorms' epsilon.
    batch_first : bool, default False
        Inputs and outputs are ``(N, L, E)`` instead of ``(L, N, E)``.
    norm_first : bool, default False
        Pre-norm layers.
    bias : bool, default True
        Learn the biases of the Linear and LayerNorm layers.

    Shape
    -----
    - src ``(S, N, E)``, tgt ``(T, N, E)`` (batch first: ``(N, S, E)``, ``(N, T, E)``); masks as for the layers:
      src_mask ``(S, S)``, tgt_mask ``(T, T)``, memory_mask ``(T, S)``.
    - Output: tgt's shape.
    - Parameters: ``encoder`` (a TransformerEncoder with its ``norm``) and ``decoder`` (a TransformerDecoder).

    Raises
    ------
    ValueError
        For ``d_model`` not divisible by ``nhead``, an unknown ``activation``, or (forward) inputs of other
        shapes.

    See Also
    --------
    TransformerEncoder, TransformerDecoder, MultiheadAttention

    Examples
    --------
    >>> import numpy as np, fastnn as fnn
    >>> model = fnn.nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
    ...                            dim_feedforward=16, batch_first=True)
    >>> rng = np.random.default_rng(0)
    >>> src, tgt = rng.normal(size=(2, 6, 8)).astype(np.float32), rng.normal(size=(2, 4, 8)).astype(np.float32)
    >>> model(src, tgt, tgt_is_causal=True).shape
    (2, 4, 8)
    """

    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", layer_norm_eps=1e-5, batch_first=False, norm_first=False,
                 bias=True):
        super().__init__()
        layer = dict(dim_feedforward=dim_feedforward, dropout=dropout, activation=activation,
                     layer_norm_eps=layer_norm_eps, batch_first=batch_first, norm_first=norm_first, bias=bias)
        self.encoder = TransformerEncoder(TransformerEncoderLayer(d_model, nhead, **layer), num_encoder_layers,
                                          LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.decoder = TransformerDecoder(TransformerDecoderLayer(d_model, nhead, **layer), num_decoder_layers,
                                          LayerNorm(d_model, eps=layer_norm_eps, bias=bias))
        self.d_model, self.nhead, self.batch_first = int(d_model), int(nhead), bool(batch_first)

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask,
                              is_causal=src_is_causal)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask,
                            tgt_key_padding_mask=tgt_key_padding_mask,
                            memory_key_padding_mask=memory_key_padding_mask, tgt_is_causal=tgt_is_causal,
                            memory_is_causal=memory_is_causal)

    @staticmethod
    def generate_square_subsequent_mask(sz, dtype=np.float32):
        """(sz, sz) float mask: 0 on and below the diagonal, −inf above it (a query sees no later key)."""
        sz = int(sz)
        return np.triu(np.full((sz, sz), -np.inf, dtype=dtype), k=1)
