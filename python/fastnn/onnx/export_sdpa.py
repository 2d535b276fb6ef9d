"""Scaled dot-product attention in standard ONNX ops (the functional ops of nn.MultiheadAttention and the
Transformer layers, which are traced: their graphs reach the exporter as these calls):

    scaled_dot_product_attention(q, k, v, mask, is_causal, scale):
        s = MatMul(q, Transpose(k, last two axes)) · scale          (scale: 1/√E unless given)
        bool mask (True = may attend): s = Where(mask, s, -inf);  float mask: s = Add(s, mask)
        is_causal: s = Where(LessOrEqual(Range(S)[None, :], Range(L)[:, None]), s, -inf), L and S read from
            the shapes at run time
        out = MatMul(Softmax(s, axis=-1), v)                         (dropout: none, eval semantics)
    attention_mask(attn_mask, key_padding_mask, N, H, L, S) (MultiheadAttention's masks, bool True = may NOT
        attend): bool -> Where(m, -inf, 0), float -> Cast; attn_mask (N·H, L, S) -> Reshape (N, H, L, S);
        key_padding_mask (N, S) -> Unsqueeze (N, 1, 1, S); both -> Add
    attention_weights(q, k, mask, seed, is_causal, scale, dropout_p) (need_weights=True): the Softmax above.
    multi_head_attention(q, k, v, mask, seed, num_heads, dropout_p, is_causal) (MultiheadAttention on its
        projections, heads read in place): q, k, v (N, L, H·D) -> Reshape (N, L, H, D) -> Transpose (N, H, L, D)
        (with k and v None, q is the one (N, L, 3E) self-attention projection: Slice into thirds first), the
        attention above with scale 1/√D, then Transpose and Reshape back to (N, L, H·Dv).
    attention_seed: the dropout seed (training only): a constant, unused in eval.

One difference: a query whose every key is masked gets zeros in fastnn and NaN in ONNX (as in PyTorch's
export); the batch axis and the sequence lengths stay dynamic.
"""
import math

import numpy as np

from .export_functional import ExportError, shape_tensor
from .values import D, T


def _pos_or_kw(args, kwargs, k, name, default=None):
    return args[k] if len(args) > k else kwargs.get(name, default)


def _causal(b, q, k, hint):
    """(L, S) bool: key j visible to query i when j <= i, L and S read from q's and k's shapes."""
    nq, nk = q.value.ndim, k.value.ndim
    zero, one = b.const(np.asarray(0, np.int64), "zero"), b.const(np.asarray(1, np.int64), "one")
    L = b.op("Squeeze", [b.shape_slice(q.name, nq - 2, nq - 1), b.ints([0])], hint + "_L")
    S = b.op("Squeeze", [b.shape_slice(k.name, nk - 2, nk - 1), b.ints([0])], hint + "_S")
    rows = b.op("Unsqueeze", [b.op("Range", [zero, L, one], hint + "_rows"), b.ints([1])], hint + "_rows2")
    cols = b.op("Unsqueeze", [b.op("Range", [zero, S, one], hint + "_cols"), b.ints([0])], hint + "_cols2")
    return b.op("LessOrEqual", [cols, rows], hint + "_causal")


def _weights(b, q, k, mask, is_causal, scale, hint):
    """Softmax(q·kᵀ·scale + mask) over the last axis."""
    dtype = q.value.dtype
    nd = k.value.ndim
    perm = list(range(nd - 2)) + [nd - 1, nd - 2]
    kt = b.op("Transpose", [k.name], hint + "_kT", perm=perm)
    s = b.op("MatMul", [q.name, kt], hint + "_qk")
    sc = 1.0 / math.sqrt(q.value.shape[-1]) if scale is None else float(scale)
    s = b.op("Mul", [s, b.scalar(sc, dtype)], hint + "_scores")
    if is_causal:
        s = b.op("Where", [_causal(b, q, k, hint), s, b.scalar(-np.inf, dtype)], hint + "_causal_scores")
    if mask is not None:
        if not isinstance(mask, T):
            raise ExportError(f"ONNX export: node '{hint}' has an attention mask that is not a tensor")
        if mask.value.dtype == np.bool_:
            s = b.op("Where", [mask.name, s, b.scalar(-np.inf, dtype)], hint + "_masked")
        else:
            m = mask.name if mask.value.dtype == dtype else \
                b.op("Cast", [mask.name], hint + "_mask_cast", to=b.helper.np_dtype_to_tensor_dtype(dtype))
            s = b.op("Add", [s, m], hint + "_masked")
    return b.op("Softmax", [s], hint + "_weights", axis=-1)


def sdpa(b, node, args, kwargs, out):
    q, k, v = args[0], args[1], args[2]
    mask = _pos_or_kw(args, kwargs, 3, "attn_mask")
    is_causal = bool(_pos_or_kw(args, kwargs, 5, "is_causal", False))
    scale = _pos_or_kw(args, kwargs, 6, "scale")
    w = _weights(b, q, k, mask, is_causal, scale, node.name)
    return b.op("MatMul", [w, v.name], node.name)


def attention_weights(b, node, args, kwargs, out):
    q, k = args[0], args[1]
    mask = _pos_or_kw(args, kwargs, 2, "attn_mask")
    is_causal = bool(_pos_or_kw(args, kwargs, 4, "is_causal", False))
    scale = _pos_or_kw(args, kwargs, 5, "scale")
    return _weights(b, q, k, mask, is_causal, scale, node.name)


def multi_head_attention(b, node, args, kwargs, out):
    q, k, v = args[0], args[1], args[2]
    mask = _pos_or_kw(args, kwargs, 3, "mask")
    H = int(_pos_or_kw(args, kwargs, 5, "num_heads", 1))
    is_causal = bool(_pos_or_kw(args, kwargs, 7, "is_causal", False))
    hint = node.name
    if k is None:  # the packed (N, L, 3E) self-attention projection: its q, k, v thirds
        E = q.value.shape[-1] // 3
        q, k, v = (T(b.op("Slice", [q.name, b.ints([i * E]), b.ints([(i + 1) * E]), b.ints([-1])],
                          f"{hint}_{part}"), q.value[..., i * E:(i + 1) * E]) for i, part in enumerate("qkv"))

    def heads(t, part):  # (N, L, H·D) -> (N, H, L, D)
        N, L, HD = t.value.shape
        # the target shape from the input's own Shape at run time (a literal 0 would let the runtime take two
        # sequence axes of one dynamic name for equal sizes)
        shape = b.op("Concat", [b.shape_slice(t.name, 0, 2), b.ints([H, HD // H])], f"{hint}_{part}_shape", axis=0)
        r = b.op("Reshape", [t.name, shape], f"{hint}_{part}_split")
        return T(b.op("Transpose", [r], f"{hint}_{part}_heads", perm=[0, 2, 1, 3]),
                 t.value.reshape(N, L, H, HD // H).transpose(0, 2, 1, 3))
    q4, k4, v4 = heads(q, "q"), heads(k, "k"), heads(v, "v")
    w = _weights(b, q4, k4, mask, is_causal, None, hint)
    o = b.op("Transpose", [b.op("MatMul", [w, v4.name], hint + "_by_head")], hint + "_by_token", perm=[0, 2, 1, 3])
    return b.op("Reshape", [o, b.ints([0, 0, -1])], hint)


def attention_seed(b, node, args, kwargs, out):
    return b.const(np.asarray(0, np.uint64), node.name)


def attention_mask(b, node, args, kwargs, out):
    attn_mask, kpm = args[0], args[1]
    N, H = args[2], args[3]
    dtype = np.dtype(_pos_or_kw(args, kwargs, 6, "dtype", "float32"))
    hint = node.name

    def additive(m, what):
        if not isinstance(m, T):
            raise ExportError(f"ONNX export: node '{hint}': {what} is not a tensor")
        if m.value.dtype == np.bool_:
            return b.op("Where", [m.name, b.scalar(-np.inf, dtype), b.scalar(0.0, dtype)], hint + "_" + what)
        if m.value.dtype == dtype:
            return m.name
        return b.op("Cast", [m.name], hint + "_" + what, to=b.helper.np_dtype_to_tensor_dtype(dtype))

    mask = None
    if attn_mask is not None:
        mask = additive(attn_mask, "attn_mask")
        if attn_mask.value.ndim == 3:  # (N·H, L, S) -> (N, H, L, S)
            last_two = D(b.shape_slice(attn_mask.name, 1, 3), None)
            shape = [s if isinstance(s, D) else int(s) for s in (N, H)] + [last_two]
            mask = b.op("Reshape", [mask, shape_tensor(b, shape, hint)], hint + "_attn_4d")
    if kpm is not None:
        padding = b.op("Unsqueeze", [additive(kpm, "key_padding_mask"), b.ints([1, 2])], hint + "_kpm_4d")
        mask = padding if mask is None else b.op("Add", [mask, padding], hint + "_both")
    if mask is None:
        raise ExportError(f"ONNX export: node '{hint}' builds an attention mask from no mask")
    return b.op("Identity", [mask], hint)


ATTENTION_OPS = {"scaled_dot_product_attention": sdpa, "attention_weights": attention_weights,
                 "attention_mask": attention_mask, "multi_head_attention": multi_head_attention,
                 "attention_seed": attention_seed}
