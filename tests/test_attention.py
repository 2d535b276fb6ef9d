import numpy as np
import pytest

import fastnn as fnn
from harness import numeric_gradient


def _setup(seed=0, N=3, T=5, Q=4, K=6, H=7, bias=True):
    fnn.manual_seed(seed)
    att = fnn.nn.AdditiveAttention(Q, K, H, bias=bias).double()
    r = np.random.default_rng(seed)
    return att, r.standard_normal((N, Q)), r.standard_normal((N, T, K)), r


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_gradients_finite_differences(bias, masked):
    att, q, k, r = _setup(bias=bias)
    mask = None
    if masked:
        mask = np.ones(k.shape[:2], bool)
        mask[0, 3:] = False
        mask[2, 1:] = False
    rc = r.standard_normal((q.shape[0], k.shape[2]))
    rw = r.standard_normal(k.shape[:2])

    def objective():
        c, w = att(q, k, mask)
        return float(np.sum(rc * c) + np.sum(rw * w))

    att.zero_grad()
    att(q, k, mask)
    dq, dk = att.backward(rc, rw)
    grads = {n: p.grad.copy() for n, p in att.named_parameters()}
    np.testing.assert_allclose(dq, numeric_gradient(objective, q), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dk, numeric_gradient(objective, k), rtol=1e-6, atol=1e-9)
    for n, p in att.named_parameters():
        np.testing.assert_allclose(grads[n], numeric_gradient(objective, p.data), rtol=1e-6, atol=1e-9,
                                   err_msg=n)


def test_numpy_oracle_weights_sum_to_one_and_mask():
    att, q, k, _ = _setup()
    mask = np.ones(k.shape[:2], bool)
    mask[1, 2:] = False
    c, w = att(q, k, mask)
    e = np.tanh((q @ att.query_weight.data.T)[:, None] + k @ att.key_weight.data.T + att.bias.data) @ att.v.data
    e = np.where(mask, e, -np.inf)
    ref = np.exp(e - e.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    np.testing.assert_allclose(w, ref, rtol=1e-12)
    np.testing.assert_allclose(c, np.einsum("nt,ntk->nk", ref, k), rtol=1e-12)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-12)
    assert np.all(w[1, 2:] == 0)
    # padded keys do not influence the result
    k2 = k.copy()
    k2[1, 2:] = 1e3
    c2, w2 = att(q, k2, mask)
    np.testing.assert_allclose(c2, c, rtol=1e-12)


def test_repeated_steps_match_one_step_form():
    att, q, k, r = _setup()
    q2 = r.standard_normal(q.shape)
    g1, g2 = r.standard_normal((3, 6)), r.standard_normal((3, 6))
    att.zero_grad()
    st = att.precompute(k)
    c1, _, ca = att.step(q, st)
    c2, _, cb = att.step(q2, st)
    dq2 = att.step_backward(g2, None, cb, st)
    dq1 = att.step_backward(g1, None, ca, st)
    dk = att.finish_backward(st)
    grads = {n: p.grad.copy() for n, p in att.named_parameters()}
    att.zero_grad()
    np.testing.assert_allclose(att(q, k)[0], c1)
    e1q, e1k = att.backward(g1)
    np.testing.assert_allclose(att(q2, k)[0], c2)
    e2q, e2k = att.backward(g2)
    np.testing.assert_allclose(dq1, e1q, rtol=1e-12)
    np.testing.assert_allclose(dq2, e2q, rtol=1e-12)
    np.testing.assert_allclose(dk, e1k + e2k, rtol=1e-10, atol=1e-14)
    for n, p in att.named_parameters():
        np.testing.assert_allclose(grads[n], p.grad, rtol=1e-10, atol=1e-14)


def test_float32_and_errors():
    att = fnn.nn.AdditiveAttention(4, 6, 5)
    c, w = att(np.zeros((2, 4), np.float32), np.ones((2, 3, 6), np.float32))
    assert c.dtype == np.float32 and c.shape == (2, 6) and w.shape == (2, 3)
    with pytest.raises(ValueError):
        att(np.zeros((2, 5), np.float32), np.ones((2, 3, 6), np.float32))
    with pytest.raises(ValueError):
        att(np.zeros((2, 4), np.float32), np.ones((2, 3, 6), np.float32), np.zeros((2, 3), bool))
    with pytest.raises(ValueError):
        fnn.nn.AdditiveAttention(4, 6, 5).backward(np.zeros((2, 6)))
