"""F.scaled_dot_product_attention (kernels/attention_sdpa.hpp): against a NumPy oracle in float64 (to 1e-9) and
float32, every mask kind (bool, float, broadcast over batch or heads, causal), `scale`, block edges (L, S not
multiples of the 64-row blocks), finite-difference gradients, dropout against the same multipliers, fully masked
rows (zeros, zero gradients), bad input, and a long causal sequence (L = S = 4096) forward and backward against a
blockwise NumPy reference on a slice, with its peak memory far below one L×S score matrix."""
import math

import numpy as np
import pytest

import fastnn as fnn
import fastnn.nn.functional as F
from fastnn.nn.function_ops import OPS, dropout_keep, sum_to_shape
from harness import TOL, numeric_gradient, rng

SDPA = OPS["scaled_dot_product_attention"]


def scores_np(q, k, mask=None, causal=False, scale=None):
    s = q @ np.swapaxes(k, -1, -2) * (1.0 / math.sqrt(q.shape[-1]) if scale is None else scale)
    L, S = s.shape[-2:]
    if causal:
        s = np.where(np.tril(np.ones((L, S), bool)), s, -np.inf)
    if mask is not None:
        s = np.where(mask, s, -np.inf) if mask.dtype == bool else s + mask
    return s


def sdpa_np(q, k, v, mask=None, causal=False, scale=None, drop=None):
    """The oracle: the whole score matrix, softmax, weights times v (rows with no visible key: zeros)."""
    s = scores_np(q, k, mask, causal, scale)
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    total = e.sum(-1, keepdims=True)
    p = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    if drop is not None:
        p = p * drop
    return p @ v


def qkv(lead, L, S, E, Ev, dtype=np.float64, seed=0):
    r = rng(seed)
    return (r.standard_normal(lead + (L, E)).astype(dtype), r.standard_normal(lead + (S, E)).astype(dtype),
            r.standard_normal(lead + (S, Ev)).astype(dtype))


SIZES = [(5, 7), (64, 64), (130, 70), (70, 130), (129, 129)]


@pytest.mark.parametrize("L, S", SIZES)
@pytest.mark.parametrize("kind", ["plain", "causal", "bool", "float", "bool-heads", "float-batch", "scale"])
def test_matches_numpy_float64(L, S, kind):
    q, k, v = qkv((2, 3), L, S, 16, 8)
    r = rng(1)
    mask, kw = None, {}
    if kind == "causal":
        kw["is_causal"] = True
    elif kind == "bool":
        mask = r.random((2, 3, L, S)) > 0.3
    elif kind == "float":
        mask = r.standard_normal((L, S))
    elif kind == "bool-heads":          # (H, L, S): the same mask for every batch element
        mask = r.random((3, L, S)) > 0.3
    elif kind == "float-batch":         # (N, 1, L, S): the same mask for every head
        mask = r.standard_normal((2, 1, L, S))
    elif kind == "scale":
        kw["scale"] = 0.37
    got = F.scaled_dot_product_attention(q, k, v, mask, **kw)
    want = sdpa_np(q, k, v, mask, kw.get("is_causal", False), kw.get("scale"))
    assert got.shape == (2, 3, L, 8) and got.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("lead", [(), (4,), (2, 2, 3)])
def test_any_leading_dims_and_float32(lead):
    q, k, v = qkv(lead, 33, 80, 8, 5, np.float32)
    mask = rng(2).random((80,)) > 0.2    # a key mask broadcast over queries and batch
    got = F.scaled_dot_product_attention(q, k, v, mask)
    assert got.dtype == np.float32 and got.shape == lead + (33, 5)
    want = sdpa_np(q.astype(np.float64), k.astype(np.float64), v.astype(np.float64), mask)
    np.testing.assert_allclose(got, want, **TOL[np.float32])


def test_batch_dims_broadcast_between_q_and_kv():
    q, _, _ = qkv((2, 3), 6, 9, 4, 4)
    _, k, v = qkv((1, 3), 6, 9, 4, 4, seed=5)
    np.testing.assert_allclose(F.scaled_dot_product_attention(q, k, v), sdpa_np(q, k, v), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("L, S, kind", [(5, 7, "bool"), (70, 130, "causal"), (130, 70, "float"), (129, 65, "plain")])
def test_gradients_match_finite_differences(L, S, kind):
    q, k, v = qkv((2,), L, S, 6, 5, seed=3)
    r = rng(4)
    mask = {"bool": r.random((L, S)) > 0.3, "float": r.standard_normal((2, L, S))}.get(kind)
    causal = kind == "causal"
    out, ctx = SDPA.forward(q, k, v, mask, is_causal=causal, scale=0.5)
    g = r.standard_normal(out.shape)
    dq, dk, dv, dmask = SDPA.backward(ctx, g, [True, True, True, False])
    assert dmask is None

    def objective():
        return float(np.sum(g * SDPA.forward(q, k, v, mask, is_causal=causal, scale=0.5)[0]))

    # finite differences on a few entries of each operand (whole gradients would take too many forwards)
    for x, d in ((q, dq), (k, dk), (v, dv)):
        for idx in [(0, 0, 0), (1, x.shape[1] - 1, 2), (1, x.shape[1] // 2, x.shape[2] - 1)]:
            old = x[idx]
            x[idx] = old + 1e-6
            up = objective()
            x[idx] = old - 1e-6
            down = objective()
            x[idx] = old
            np.testing.assert_allclose(d[idx], (up - down) / 2e-6, rtol=1e-6, atol=1e-8)


def test_gradients_whole_small_case_and_float32():
    q, k, v = qkv((3,), 4, 6, 3, 2, seed=6)
    mask = rng(7).random((3, 4, 6)) > 0.4
    out, ctx = SDPA.forward(q, k, v, mask)
    g = rng(8).standard_normal(out.shape)
    grads = SDPA.backward(ctx, g, [True, True, True, False])
    for x, d in zip((q, k, v), grads):
        np.testing.assert_allclose(d, numeric_gradient(lambda: float(np.sum(g * SDPA.forward(q, k, v, mask)[0])), x),
                                   rtol=1e-6, atol=1e-9)
    f = [a.astype(np.float32) for a in (q, k, v)]
    out32, ctx32 = SDPA.forward(*f, mask)
    for d32, d in zip(SDPA.backward(ctx32, g.astype(np.float32), [True] * 4)[:3], grads[:3]):
        assert d32.dtype == np.float32
        np.testing.assert_allclose(d32, d, rtol=1e-4, atol=1e-5)


def test_fully_masked_row_gives_zeros_and_zero_gradients():
    q, k, v = qkv((2,), 70, 90, 4, 3)
    mask = np.ones((70, 90), bool)
    mask[3] = False       # query 3 may attend nothing
    mask[66] = False      # ... and one in the second row block
    out, ctx = SDPA.forward(q, k, v, mask)
    assert np.all(np.isfinite(out))
    assert np.all(out[:, 3] == 0) and np.all(out[:, 66] == 0)
    np.testing.assert_allclose(out, sdpa_np(q, k, v, mask), rtol=1e-9, atol=1e-12)
    dq, dk, dv, _ = SDPA.backward(ctx, np.ones_like(out), [True, True, True, False])
    assert all(np.all(np.isfinite(d)) for d in (dq, dk, dv))
    assert np.all(dq[:, 3] == 0) and np.all(dq[:, 66] == 0)
    # a float mask of -inf behaves the same
    fmask = np.where(mask, 0.0, -np.inf)
    np.testing.assert_array_equal(F.scaled_dot_product_attention(q, k, v, fmask), out)


def test_dropout_uses_one_multiplier_per_weight():
    q, k, v = qkv((2,), 9, 11, 4, 3)
    fnn.random.manual_seed(5)
    out, ctx = SDPA.forward(q, k, v, None, dropout_p=0.25)
    seed = ctx[11]   # the one number drawn: the kernel hashes (seed, index) into the mask, NumPy recomputes it
    drop = dropout_keep(seed, 2 * 9 * 11, 0.25).reshape(2, 9, 11) / 0.75
    assert set(np.unique(drop)) <= {0.0, 1 / 0.75} and 0 < np.count_nonzero(drop == 0) < drop.size
    np.testing.assert_allclose(out, sdpa_np(q, k, v, drop=drop), rtol=1e-9, atol=1e-12)
    g = rng(9).standard_normal(out.shape)
    dq, dk, dv, _ = SDPA.backward(ctx, g, [True, True, True, False])

    def objective():   # the same multipliers: the oracle with `drop` fixed
        return float(np.sum(g * sdpa_np(q, k, v, drop=drop)))
    for x, d in ((q, dq), (k, dk), (v, dv)):
        np.testing.assert_allclose(d, numeric_gradient(objective, x), rtol=1e-6, atol=1e-9)
    assert np.all(SDPA.forward(q, k, v, None, dropout_p=1.0)[0] == 0)


def test_traced_module_gets_gradients_of_its_parameters():
    class Attend(fnn.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = fnn.nn.Parameter(rng(1).standard_normal((6, 4)))
            self.v = fnn.nn.Parameter(rng(2).standard_normal((6, 3)))

        def forward(self, x):
            return F.scaled_dot_product_attention(x, self.k, self.v, is_causal=False)

    from harness import check_module_gradients
    check_module_gradients(Attend(), rng(3).standard_normal((2, 5, 4)))


def test_bad_input_raises_clear_errors():
    q, k, v = qkv((2,), 4, 6, 3, 2)
    with pytest.raises(ValueError, match=r"attn_mask of shape \(5, 6\) does not broadcast.*\(2, 4, 6\)"):
        F.scaled_dot_product_attention(q, k, v, np.ones((5, 6), bool))
    with pytest.raises(TypeError, match="attn_mask must be bool or float"):
        F.scaled_dot_product_attention(q, k, v, np.ones((4, 6), np.int64))
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(q, k, v, np.ones((4, 6), bool), is_causal=True)
    with pytest.raises(ValueError, match="do not match"):
        F.scaled_dot_product_attention(q, k[..., :2], v)
    with pytest.raises(ValueError, match="at least 2-D"):
        F.scaled_dot_product_attention(q[0, 0], k, v)


def test_thread_count_does_not_change_the_bits():
    q, k, v = qkv((8,), 100, 100, 16, 16, np.float32)
    before = fnn.ops.get_num_threads()
    try:
        fnn.ops.set_num_threads(1)
        one, ctx1 = SDPA.forward(q, k, v, None, is_causal=True)
        g1 = SDPA.backward(ctx1, np.ones_like(one), [True] * 4)
        fnn.ops.set_num_threads(2)
        two, ctx2 = SDPA.forward(q, k, v, None, is_causal=True)
        g2 = SDPA.backward(ctx2, np.ones_like(two), [True] * 4)
    finally:
        fnn.ops.set_num_threads(before)
    np.testing.assert_array_equal(one, two)
    for a, b in zip(g1[:3], g2[:3]):
        np.testing.assert_array_equal(a, b)


# ---- a long causal sequence ---------------------------------------------------------------------------------
def _rss_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _blockwise_reference(q, k, v, do, rows, keys, block=512):
    """float64 NumPy, one (block × S) slab of scores at a time, causal: the output and dq of the query `rows`,
    and dk, dv of the `keys` (which need every query's weights for those keys)."""
    L, E = q.shape
    scale = 1.0 / math.sqrt(E)
    lse = np.empty(L)
    out = np.empty((L, v.shape[1]))
    for i0 in range(0, L, block):
        s = q[i0:i0 + block] @ k.T * scale
        s = np.where(np.arange(k.shape[0])[None, :] > np.arange(i0, i0 + len(s))[:, None], -np.inf, s)
        m = s.max(1, keepdims=True)
        e = np.exp(s - m)
        lse[i0:i0 + block] = (m + np.log(e.sum(1, keepdims=True)))[:, 0]
        out[i0:i0 + block] = (e / e.sum(1, keepdims=True)) @ v
    delta = np.sum(do * out, axis=1)

    def weights(r, c):
        s = q[r] @ k[c].T * scale
        s = np.where(np.asarray(c)[None, :] > np.asarray(r)[:, None], -np.inf, s)
        return np.exp(s - lse[r][:, None])
    p = weights(rows, np.arange(k.shape[0]))
    ds = p * (do[rows] @ v.T - delta[rows][:, None])
    dq = ds @ k * scale
    pk = weights(np.arange(L), keys)
    dv = pk.T @ do
    dk = (pk * (do @ v[keys].T - delta[:, None])).T @ q * scale
    return out[rows], dq, dk, dv


def test_long_causal_sequence_memory_grows_with_length():
    B, L, E = 8, 4096, 64
    r = rng(11)
    q, k, v = (r.standard_normal((B, L, E)).astype(np.float32) for _ in range(3))
    do = r.standard_normal((B, L, E)).astype(np.float32)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # resets the peak resident set size (VmHWM) to the current one
    except OSError as e:
        raise RuntimeError("cannot reset the peak RSS through /proc/self/clear_refs") from e
    base = _rss_kib("VmRSS")
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    o2, ctx = SDPA.forward(q, k, v, None, is_causal=True)
    dq, dk, dv, _ = SDPA.backward(ctx, do, [True, True, True, False])
    peak_mib = (_rss_kib("VmHWM") - base) / 1024
    score_matrix_mib = B * L * L * 4 / 2 ** 20   # what the (B, L, S) float32 weights would take: 512 MiB
    # outputs, lse and gradients: about 4 × 8 MiB + small blocks; one score matrix per batch·head would be 64 MiB
    assert peak_mib < 96, f"peak resident memory grew by {peak_mib:.0f} MiB (the score matrices: {score_matrix_mib:.0f})"
    np.testing.assert_array_equal(out, o2)
    b = 5
    rows = np.r_[0:3, 2040:2050, 4090:4096]
    keys = np.r_[0:4, 4000:4004, 4095:4096]
    f64 = [a[b].astype(np.float64) for a in (q, k, v, do)]
    want_out, want_dq, want_dk, want_dv = _blockwise_reference(*f64, rows, keys)
    np.testing.assert_allclose(out[b, rows], want_out, rtol=1e-3, atol=2e-5)
    np.testing.assert_allclose(dq[b, rows], want_dq, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(dk[b, keys], want_dk, rtol=1e-3, atol=2e-4)
    np.testing.assert_allclose(dv[b, keys], want_dv, rtol=1e-3, atol=2e-4)


# ---- multi-head attention on projections, heads read in place ----------------------------------------------
MHA_OP = OPS["multi_head_attention"]


def heads_np(x, H):
    """(N, L, H·D) -> (N, H, L, D)."""
    N, L, HD = x.shape
    return x.reshape(N, L, H, HD // H).transpose(0, 2, 1, 3)


def mha_np(q, k, v, H, mask=None, causal=False, drop=None):
    """The oracle: per-head attention of (N, L, H·D) projections, back to (N, L, H·Dv)."""
    o = sdpa_np(heads_np(q, H), heads_np(k, H), heads_np(v, H), mask, causal, drop=drop)
    N, _, L, Dv = o.shape
    return o.transpose(0, 2, 1, 3).reshape(N, L, H * Dv)


MASKS = {"none": None, "shared": lambda r, N, H, L, S: r.standard_normal((L, S)),
         "padding": lambda r, N, H, L, S: np.where(r.random((N, 1, 1, S)) > 0.3, 0.0, -np.inf),
         "per-head": lambda r, N, H, L, S: r.standard_normal((N, H, L, S)), "causal": None}


def scores_grad_np(q, k, v, g, mask=None, causal=False, drop=None):
    """The oracle of the scores' gradient dS = P∘(dP − Σⱼ P∘dP), dP = (g·vᵀ)∘drop (what an additive mask gets)."""
    s = scores_np(q, k, mask, causal)
    m = np.max(s, axis=-1, keepdims=True)
    e = np.exp(s - np.where(np.isfinite(m), m, 0.0))
    total = e.sum(-1, keepdims=True)
    p = np.divide(e, total, out=np.zeros_like(e), where=total > 0)
    dp = g @ np.swapaxes(v, -1, -2)
    if drop is not None:
        dp = dp * drop
    return p * (dp - np.sum(p * dp, axis=-1, keepdims=True))


def test_scores_gradient_oracle_matches_finite_differences():
    q, k, v = qkv((2,), 4, 5, 3, 2)
    mask = rng(24).standard_normal((2, 4, 5))
    g = rng(25).standard_normal((2, 4, 2))
    want = numeric_gradient(lambda: float(np.sum(g * sdpa_np(q, k, v, mask))), mask)
    np.testing.assert_allclose(scores_grad_np(q, k, v, g, mask), want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("kind", list(MASKS))
def test_multi_head_attention_reads_heads_in_place(packed, kind):
    N, H, L, D = 2, 2, 66, 3
    S = L if packed else 65
    r = rng(21)
    if packed:
        qkv = r.standard_normal((N, L, 3 * H * D))
        q, k, v = qkv[..., :H * D], qkv[..., H * D:2 * H * D], qkv[..., 2 * H * D:]
        args = (qkv, None, None)
    else:
        q, k, v = r.standard_normal((N, L, H * D)), r.standard_normal((N, S, H * D)), r.standard_normal((N, S, 2 * H))
        args = (q, k, v)
    mask = MASKS[kind](r, N, H, L, S) if MASKS[kind] else None
    causal = kind == "causal"
    out, ctx = MHA_OP.forward(*args, mask, None, num_heads=H, is_causal=causal)
    np.testing.assert_allclose(out, mha_np(q, k, v, H, mask, causal), rtol=1e-10, atol=1e-12)
    g = r.standard_normal(out.shape)
    needs = [True, not packed, not packed, mask is not None and kind != "padding", False]
    grads = MHA_OP.backward(ctx, g, needs)

    def objective():
        qq, kk, vv = ((qkv[..., :H * D], qkv[..., H * D:2 * H * D], qkv[..., 2 * H * D:]) if packed else (q, k, v))
        return float(np.sum(g * mha_np(qq, kk, vv, H, mask, causal)))
    if packed:
        np.testing.assert_allclose(grads[0], numeric_gradient(objective, qkv), rtol=1e-6, atol=1e-8)
    else:
        for x, gx in zip((q, k, v), grads[:3]):
            np.testing.assert_allclose(gx, numeric_gradient(objective, x), rtol=1e-6, atol=1e-8)
    if needs[3]:   # a float mask: its gradient, summed over what it was broadcast along
        ds = scores_grad_np(heads_np(q, H), heads_np(k, H), heads_np(v, H), heads_np(g, H), mask)
        np.testing.assert_allclose(grads[3], sum_to_shape(ds, mask.shape), rtol=1e-9, atol=1e-12)
    else:
        assert grads[3] is None


def test_multi_head_attention_float32_and_dropout():
    N, H, L, D = 3, 2, 9, 5
    r = rng(22)
    qkv = r.standard_normal((N, L, 3 * H * D))
    q, k, v = qkv[..., :H * D], qkv[..., H * D:2 * H * D], qkv[..., 2 * H * D:]
    out32, _ = MHA_OP.forward(qkv.astype(np.float32), None, None, None, None, num_heads=H)
    assert out32.dtype == np.float32
    np.testing.assert_allclose(out32, mha_np(q, k, v, H), rtol=1e-5, atol=1e-6)
    fnn.manual_seed(3)
    out, ctx = MHA_OP.forward(qkv, None, None, None, None, num_heads=H, dropout_p=0.3)
    seed = ctx[12]
    drop = dropout_keep(seed, N * H * L * L, 0.3).reshape(N, H, L, L) / 0.7
    assert 0 < np.count_nonzero(drop == 0) < drop.size
    np.testing.assert_allclose(out, mha_np(q, k, v, H, drop=drop), rtol=1e-10, atol=1e-12)
    g = r.standard_normal(out.shape)
    dqkv = MHA_OP.backward(ctx, g, [True, False, False, False, False])[0]

    def objective():
        return float(np.sum(g * mha_np(qkv[..., :H * D], qkv[..., H * D:2 * H * D], qkv[..., 2 * H * D:], H,
                                       drop=drop)))
    np.testing.assert_allclose(dqkv, numeric_gradient(objective, qkv), rtol=1e-6, atol=1e-8)
    # a seed given (shared with the weights of need_weights=True) fixes the mask
    again, _ = MHA_OP.forward(qkv, None, None, None, np.uint64(seed), num_heads=H, dropout_p=0.3)
    np.testing.assert_array_equal(again, out)


@pytest.mark.parametrize("L, S", [(5, 7), (66, 130)])
def test_sdpa_float_mask_gets_the_scores_gradient(L, S):
    q, k, v = qkv((2, 3), L, S, 5, 4)
    r = rng(23)
    for shape in [(L, S), (2, 1, L, S), (3, 1, S)]:
        mask = r.standard_normal(shape)
        out, ctx = SDPA.forward(q, k, v, mask)
        g = r.standard_normal(out.shape)
        dmask = SDPA.backward(ctx, g, [False, False, False, True])[3]
        assert dmask.shape == shape
        np.testing.assert_allclose(dmask, sum_to_shape(scores_grad_np(q, k, v, g, mask), shape), rtol=1e-9,
                                   atol=1e-12)
        if L < 10:
            np.testing.assert_allclose(dmask, numeric_gradient(lambda: float(np.sum(g * sdpa_np(q, k, v, mask))),
                                                               mask), rtol=1e-6, atol=1e-8)
    # bool masks have none
    out, ctx = SDPA.forward(q, k, v, mask > 0)
    assert SDPA.backward(ctx, g, [True, True, True, True])[3] is None


def test_layouts_outside_the_arrays_are_refused():
    q = np.zeros((2, 4, 6))
    out = np.empty((2, 4, 6))
    lay = (0, 24, 0, 6)
    with pytest.raises(ValueError, match="reaches past the array"):
        fnn.ops.sdpa_forward(q, q, q, None, out, (2, 1, 4, 4, 6, 6), ((0, 24, 0, 6), lay, (6, 24, 0, 6), lay),
                             1, 1, False, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="multiple of heads"):
        fnn.ops.sdpa_forward(q, q, q, None, out, (3, 2, 4, 4, 6, 6), (lay,) * 4, 1, 1, False, 1.0, 0.0, 0)
