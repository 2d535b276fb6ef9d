"""Recurrent benchmarks, fastnn vs PyTorch 2.13 in the same run, 2 threads (issue 4): LSTM and GRU, input 64,
hidden 128, sequence 32, batch 32, last state -> Linear(128 -> 10), cross-entropy, SGD: ms per training step.
Target: fastnn at most 1.0x PyTorch's time.
Run: python bench/bench_rnn.py [--threads 2] [--repeats 15]
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy is not timed; keep its pool off the cores

import numpy as np
import torch

import fastnn as fnn
from common import classifier_training_steps, interleaved, report, warm_up

T, N, I, H, C = 32, 32, 64, 128, 10


class LastState(fnn.nn.Module):
    """rnn over (T, N, I), its last hidden state -> Linear."""

    def __init__(self, rnn, head):
        super().__init__()
        self.rnn, self.head = rnn, head

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])

    def backward_parameters(self, g):
        grad_hn = self.head.backward(g)[None]
        self.rnn.backward_parameters(None, grad_hn)


class TorchLastState(torch.nn.Module):
    def __init__(self, rnn, head):
        super().__init__()
        self.rnn, self.head = rnn, head

    def forward(self, x):
        _, state = self.rnn(x)
        h_n = state[0] if isinstance(state, tuple) else state
        return self.head(h_n[-1])


def training_steps(kind):
    fnn.manual_seed(0)
    model = LastState(getattr(fnn.nn, kind)(I, H), fnn.nn.Linear(H, C))
    tmodel = TorchLastState(getattr(torch.nn, kind)(I, H), torch.nn.Linear(H, C))
    tmodel.rnn.load_state_dict({k: torch.from_numpy(v) for k, v in model.rnn.state_dict().items()})
    tmodel.head.load_state_dict({k: torch.from_numpy(v) for k, v in model.head.state_dict().items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    y = rng.integers(0, C, N)
    return classifier_training_steps(model, tmodel, x, y, lr=0.01, momentum=0.0)


def flops_per_step(kind):
    G = {"LSTM": 4, "GRU": 3}[kind]
    fwd = 2 * T * N * G * H * (I + H)
    return 3 * fwd - 2 * T * N * G * H * I  # backward: dW_ih, dW_hh, dh; no dx for the input


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    print(f"fastnn {fnn.__version__} {fnn.build_info()}; torch {torch.__version__}; threads {args.threads}")
    ratios = {}
    for kind in ("LSTM", "GRU"):
        cands = training_steps(kind)
        warm_up(cands, 10)
        res = interleaved(cands, 10, args.repeats)
        ratios[kind] = report(f"{kind} 64->128, T=32, batch 32, last state -> Linear, train step", "ms", 1e3, res,
                              target=1.0)
        print(f"    fastnn {flops_per_step(kind) / res['fastnn'] / 1e9:.0f} GFLOP/s, "
              f"torch {flops_per_step(kind) / res['torch'] / 1e9:.0f} GFLOP/s")
    print("ratios fastnn/torch: " + " ".join(f"{k}={v:.2f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
