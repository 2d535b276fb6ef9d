"""W9: a small Transformer classifier, fastnn against PyTorch in the same run (ms per training step, and the
eval-mode forward), plus the fused attention kernel's GFLOP/s.

    batch 32 of 64 random token ids -> Embedding(1000, 128) + a learned positional Parameter (64, 128)
    -> 2 x TransformerEncoderLayer(128, 4, 512, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
    -> mean over tokens -> Linear(128, 10); SGD lr 0.01 momentum 0.9, cross-entropy, fixed seed.

Both libraries start from the same weights (torch's state_dict loaded strictly into fastnn); the losses are
checked equal in eval mode before timing, then both train with dropout. The eval forward also runs in
onnxruntime (the model exported with fnn.onnx.export) when that is installed.

    python bench/bench_transformer.py [--threads 2] [--repeats 9]
"""
import argparse
import time

import numpy as np
import torch

import fastnn as fnn
from common import classifier_training_steps, interleaved, report, warm_up

N, T, V, D, H, FF, C = 32, 64, 1000, 128, 4, 512, 10


class FastClassifier(fnn.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = fnn.nn.Embedding(V, D)
        self.pos = fnn.nn.Parameter(np.zeros((T, D), np.float32))
        layer = fnn.nn.TransformerEncoderLayer(D, H, FF, dropout=0.1, activation="gelu", batch_first=True,
                                               norm_first=True)
        self.encoder = fnn.nn.TransformerEncoder(layer, 2)
        self.head = fnn.nn.Linear(D, C)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids) + self.pos).mean(1))


class TorchClassifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, D)
        self.pos = torch.nn.Parameter(torch.randn(T, D) * 0.02)
        layer = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.1, activation="gelu", batch_first=True,
                                                 norm_first=True)
        self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = torch.nn.Linear(D, C)

    def forward(self, ids):
        return self.head(self.encoder(self.embed(ids) + self.pos).mean(1))


def gemm_peak_gflops(repeats=5):
    """The measured peak: one float32 1024³ GEMM through fastnn's own product (kernels/batched_gemm.hpp)."""
    r = np.random.default_rng(1)
    a, b = (r.standard_normal((1024, 1024)).astype(np.float32) for _ in range(2))
    best = 1e9
    for _ in range(repeats):
        t0 = time.perf_counter()
        fnn.ops.batched_matmul(a, b, False, False)
        best = min(best, time.perf_counter() - t0)
    return 2 * 1024 ** 3 / best / 1e9


def attention_gflops(threads, repeats=5):
    """The fused kernel alone: causal and full forward+backward, (B·H, L, d) = (8, 1024, 64) float32, and as a
    fraction of the measured GEMM peak."""
    from fastnn.nn.function_ops import OPS
    op = OPS["scaled_dot_product_attention"]
    peak = gemm_peak_gflops()
    print(f"measured peak: float32 1024^3 GEMM {peak:.1f} GFLOP/s ({threads} threads)")
    r = np.random.default_rng(0)
    q, k, v, g = (r.standard_normal((8, 1024, 64)).astype(np.float32) for _ in range(4))
    for causal in (False, True):
        best = {}
        for _ in range(repeats):
            t0 = time.perf_counter()
            out, ctx = op.forward(q, k, v, None, is_causal=causal)
            t1 = time.perf_counter()
            op.backward(ctx, g, [True, True, True, False])
            t2 = time.perf_counter()
            best["fwd"] = min(best.get("fwd", 1e9), t1 - t0)
            best["bwd"] = min(best.get("bwd", 1e9), t2 - t1)
        pairs = 8 * 1024 * 1024 * (0.5 if causal else 1.0)
        fwd_flops = pairs * 64 * 4            # q·kᵀ and p·v
        bwd_flops = pairs * 64 * 10           # recomputed q·kᵀ, dO·vᵀ, pᵀ·dO, dS·k, dSᵀ·q
        print(f"attention kernel (8, 1024, 64) float32 {'causal' if causal else 'full  '}: "
              f"forward {best['fwd'] * 1e3:6.1f} ms = {fwd_flops / best['fwd'] / 1e9:5.1f} GFLOP/s, "
              f"backward {best['bwd'] * 1e3:6.1f} ms = {bwd_flops / best['bwd'] / 1e9:5.1f} GFLOP/s "
              f"({threads} threads; {fwd_flops / best['fwd'] / 1e9 / peak:.0%} / "
              f"{bwd_flops / best['bwd'] / 1e9 / peak:.0%} of peak)")


def onnxruntime_session(model, ids, threads):
    """The eval-mode model exported with fnn.onnx.export and loaded in onnxruntime on `threads` threads (its
    outputs checked against fastnn's), or None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: the eval forward is compared with PyTorch only")
        return None
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "w9.onnx")
        fnn.onnx.export(model, path, example_inputs=[ids])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # no spinning between runs: its idle threads would take the cores from the runs interleaved with it
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    out = session.run(None, {session.get_inputs()[0].name: ids})[0]
    assert np.allclose(out, model(ids), rtol=1e-4, atol=1e-4), "onnxruntime and fastnn disagree"
    return session


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"fastnn {fnn.__version__}; torch {torch.__version__}; threads {args.threads}")
    torch.manual_seed(0)
    fnn.random.manual_seed(0)
    tmodel = TorchClassifier()
    model = FastClassifier()
    model.load_state_dict({k: v.detach().numpy() for k, v in tmodel.state_dict().items()}, strict=True)
    r = np.random.default_rng(0)
    ids = r.integers(0, V, (N, T))
    y = r.integers(0, C, N)
    # equal losses checked in eval mode (no dropout), then both train with dropout
    model.eval()
    tmodel.eval()
    steps = classifier_training_steps(model, tmodel, ids, y)
    model.train()
    tmodel.train()
    warm_up(steps, 3)
    res = interleaved(steps, 5, args.repeats)
    report("W9 Transformer classifier train step (batch 32 x 64 tokens)", "ms", 1e3, res, target=0.5)

    model.eval()
    tmodel.eval()
    tids = torch.from_numpy(ids)

    def torch_eval():
        with torch.no_grad():
            tmodel(tids)
    evals = {"fastnn": lambda: model(ids), "torch": torch_eval}
    session = onnxruntime_session(model, ids, args.threads)
    if session is not None:
        feed = {session.get_inputs()[0].name: ids}
        evals["onnxruntime"] = lambda: session.run(None, feed)
    warm_up(evals, 3)
    res = interleaved(evals, 10, args.repeats)
    report("W9 eval-mode forward (batch 32 x 64 tokens)", "ms", 1e3, res)
    if session is not None:
        print(f"{'W9 eval-mode forward against onnxruntime':<58} fastnn {res['fastnn'] * 1e3:9.1f} ms   "
              f"onnxruntime {res['onnxruntime'] * 1e3:6.1f} ms   ratio {res['fastnn'] / res['onnxruntime']:5.2f}")
    attention_gflops(args.threads)


if __name__ == "__main__":
    main()
