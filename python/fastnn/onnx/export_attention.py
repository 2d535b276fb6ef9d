"""AdditiveAttention in ONNX ops (export_modules.py and export_seq2seq.py):
Tanh(keys·Wkᵀ + b + (query·Wqᵀ)[:, None]) · v, Where for the mask, Softmax over T, then the weights times the keys."""
import numpy as np


def attention_keys(b, m, prefix, keys):
    """AdditiveAttention's key projection keys·Wkᵀ + b (N, T, H), computed once per sequence."""
    kt = b.op("Transpose", [b.param(m, prefix, "key_weight")], prefix + "key_weight_T", perm=[1, 0])
    proj = b.op("MatMul", [keys, kt], prefix + "key_proj")
    if m.bias is not None:
        proj = b.op("Add", [proj, b.param(m, prefix, "bias")], prefix + "key_proj_b")
    return proj


def attention_step(b, m, prefix, proj, keys, query, mask, dtype):
    """(context (N, K), weights (N, T)) of one query (N, Q) against projected keys."""
    qt = b.op("Transpose", [b.param(m, prefix, "query_weight")], prefix + "query_weight_T", perm=[1, 0])
    qp = b.op("Unsqueeze", [b.op("MatMul", [query, qt], prefix + "query_proj"), b.ints([1])], prefix + "q")
    a = b.op("Tanh", [b.op("Add", [proj, qp], prefix + "pre")], prefix + "a")
    e = b.op("MatMul", [a, b.param(m, prefix, "v")], prefix + "scores")
    if mask is not None:
        e = b.op("Where", [mask, e, b.scalar(-np.inf, dtype)], prefix + "masked")
    w = b.op("Softmax", [e], prefix + "weights", axis=1)
    ctx = b.op("MatMul", [b.op("Unsqueeze", [w, b.ints([1])], prefix + "w3"), keys], prefix + "ctx3")
    return b.op("Squeeze", [ctx, b.ints([1])], prefix + "context"), w
