import time

import numpy as np
import pytest

import fastnn as fnn
from harness import numeric_gradient


def _grad_check(cell, bidir, pad):
    fnn.manual_seed(0)
    m = fnn.nn.Seq2Seq(5, 6, 3, 4, cell=cell, bidirectional_encoder=bidir, attention_dim=3,
                       src_pad_idx=4 if pad else None).double()
    r = np.random.default_rng(0)
    src = r.integers(0, 4, (2, 4))
    if pad:
        src[1, 2:] = 4
    tgt = r.integers(0, 6, (2, 3))
    g = r.standard_normal((2, 3, 6))

    def objective():
        return float(np.sum(g * m(src, tgt)))

    m.zero_grad()
    m(src, tgt)
    assert m.backward(g.copy()) is None
    analytic = {n: p.grad.copy() for n, p in m.named_parameters()}
    for n, p in m.named_parameters():
        num = numeric_gradient(objective, p.data)
        if pad and n == "src_embedding.weight":
            num[4] = 0  # the padding row gets no gradient (PyTorch's padding_idx)
        np.testing.assert_allclose(analytic[n], num, rtol=1e-6, atol=1e-9, err_msg=f"{cell}: {n}")


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("bidir,pad", [(True, False), (False, False), (True, True)])
def test_gradients_finite_differences(cell, bidir, pad):
    _grad_check(cell, bidir, pad)


def test_shapes_generate_and_errors():
    m = fnn.nn.Seq2Seq(7, 8, 4, 5)
    src = np.array([[1, 2, 3], [4, 5, 6]])
    logits = m(src, np.array([[0, 1], [0, 2]]))
    assert logits.shape == (2, 2, 8) and logits.dtype == np.float32
    out = m.generate(src, max_len=4, bos=0)
    assert out.shape == (2, 4) and out.dtype == np.int64
    # greedy decoding agrees with teacher-forced logits fed its own previous outputs
    tin = np.concatenate([np.zeros((2, 1), np.int64), out[:, :-1]], axis=1)
    np.testing.assert_array_equal(m(src, tin).argmax(-1), out)
    with pytest.raises(ValueError):
        fnn.nn.Seq2Seq(7, 8, 4, 5, cell="rnn")
    with pytest.raises(ValueError):
        m.backward(np.zeros((2, 2, 8)))
    m(src, np.array([[0, 1], [0, 2]]))
    with pytest.raises(ValueError):
        m.backward(np.zeros((2, 3, 8)))


BOS, EOS = 10, 11


def _reverse_batch(r, n, length):
    src = r.integers(0, 10, (n, length))
    rev = src[:, ::-1]
    tgt_in = np.concatenate([np.full((n, 1), BOS), rev], axis=1)
    tgt_out = np.concatenate([rev, np.full((n, 1), EOS)], axis=1)
    return src, tgt_in, tgt_out


def test_learns_to_reverse_digit_sequences():
    """Lengths 5-10, vocabulary of 10 digits plus BOS/EOS; batches bucketed by length. Exact match (every digit
    and the EOS at the right place) on held-out sequences with greedy decoding."""
    threads = fnn.get_num_threads()
    # The decoder steps are small NumPy GEMMs: with fastnn's thread pool and OpenBLAS's both on 2 shared
    # cores, their threads contend and a step gets ~10x slower. One thread each avoids that.
    fnn.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            _train_and_check_reverse()
        else:
            with threadpool_limits(1, "blas"):
                _train_and_check_reverse()
    finally:
        fnn.set_num_threads(threads)


def _train_and_check_reverse():
    fnn.manual_seed(0)
    r = np.random.default_rng(0)
    m = fnn.nn.Seq2Seq(10, 12, 16, 48, cell="gru", attention_dim=32)
    opt = fnn.optim.Adam(m.parameters(), lr=1e-2)
    loss_fn = fnn.nn.CrossEntropyLoss()
    start, cpu_start = time.perf_counter(), time.process_time()
    for it in range(STEPS):
        src, tin, tout = _reverse_batch(r, 64, int(r.integers(5, 11)))
        logits = m(src, tin)
        loss_fn(logits.transpose(0, 2, 1), tout)
        opt.zero_grad()
        m.backward(loss_fn.backward().transpose(0, 2, 1))
        norm = np.sqrt(sum(float(np.sum(p.grad ** 2)) for p in m.parameters()))
        if norm > 1.0:  # clip the global gradient norm to 1
            for p in m.parameters():
                p.grad *= 1.0 / norm
        opt.param_groups[0]["lr"] = 1e-2 * (1 - 0.95 * it / STEPS)  # linear decay to 5%
        opt.step()
    train_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    m.eval()
    correct = total = 0
    test_r = np.random.default_rng(12345)
    for length in range(5, 11):
        src, _, tout = _reverse_batch(test_r, 100, length)
        out = m.generate(src, max_len=12, bos=BOS, eos=EOS)
        ok = np.zeros(len(src), bool)
        if out.shape[1] >= length + 1:
            ok = (out[:, :length + 1] == tout).all(axis=1)
        correct += ok.sum()
        total += len(src)
    acc = correct / total
    print(f"reverse: exact match {acc:.3f} after {STEPS} steps in {train_s:.1f} s ({cpu_s:.1f} s CPU)")
    assert acc >= 0.95


STEPS = 800


PAD = 12


def _padded_batch(r, n):
    lengths = r.integers(5, 11, n)
    S = lengths.max()
    src, tin, tout = (np.full((n, S + k), PAD) for k in (0, 1, 1))
    for i, length in enumerate(lengths):
        s = r.integers(0, 10, length)
        src[i, :length] = s
        tin[i, 0], tin[i, 1:length + 1] = BOS, s[::-1]
        tout[i, :length], tout[i, length] = s[::-1], EOS
    return src, tin, tout, lengths


def test_lstm_learns_to_reverse_padded_mixed_length_batches():
    """Mixed lengths in one batch: source padding masked out of the attention, target padding ignored by the
    loss (ignore_index)."""
    threads = fnn.get_num_threads()
    fnn.set_num_threads(1)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            _train_padded()
        else:
            with threadpool_limits(1, "blas"):
                _train_padded()
    finally:
        fnn.set_num_threads(threads)


def _train_padded():
    fnn.manual_seed(0)
    r = np.random.default_rng(0)
    m = fnn.nn.Seq2Seq(13, 13, 16, 48, cell="lstm", attention_dim=32, src_pad_idx=PAD, tgt_pad_idx=PAD)
    opt = fnn.optim.Adam(m.parameters(), lr=1e-2)
    loss_fn = fnn.nn.CrossEntropyLoss(ignore_index=PAD)
    cpu_start = time.process_time()
    for it in range(STEPS):
        src, tin, tout, _ = _padded_batch(r, 64)
        loss_fn(m(src, tin).transpose(0, 2, 1), tout)
        opt.zero_grad()
        m.backward(loss_fn.backward().transpose(0, 2, 1))
        norm = np.sqrt(sum(float(np.sum(p.grad ** 2)) for p in m.parameters()))
        if norm > 1.0:
            for p in m.parameters():
                p.grad *= 1.0 / norm
        opt.param_groups[0]["lr"] = 1e-2 * (1 - 0.95 * it / STEPS)
        opt.step()
    cpu_s = time.process_time() - cpu_start
    m.eval()
    src, _, tout, lengths = _padded_batch(np.random.default_rng(123), 600)
    out = m.generate(src, max_len=12, bos=BOS, eos=EOS)
    acc = np.mean([out.shape[1] > n and (out[i, :n + 1] == tout[i, :n + 1]).all() for i, n in enumerate(lengths)])
    print(f"reverse (LSTM, padded): exact match {acc:.3f} after {STEPS} steps, {cpu_s:.1f} s CPU")
    assert acc >= 0.95


def test_state_dict_and_save_load_round_trip(tmp_path):
    m = fnn.nn.Seq2Seq(7, 8, 4, 5, cell="lstm", src_pad_idx=0)
    src, tin = np.array([[1, 2, 3, 0]]), np.array([[0, 1, 2]])
    sd = m.state_dict()
    assert "decoder.weight_ih" in sd and sd["decoder.weight_ih"].shape == (20, 4 + 10)
    m2 = fnn.nn.Seq2Seq(7, 8, 4, 5, cell="lstm", src_pad_idx=0)
    m2.load_state_dict(sd)
    np.testing.assert_array_equal(m(src, tin), m2(src, tin))
    fnn.save(m, tmp_path / "m.fnn")
    np.testing.assert_array_equal(m(src, tin), fnn.load(tmp_path / "m.fnn")(src, tin))
