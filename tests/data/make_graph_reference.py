"""Writes graph_reference.npz: PyTorch 2.13 autograd on models with branches (residual and dense blocks, the
two-input W8 model, recurrent classifiers, shared layers, several outputs), so tests/test_graph_torch.py can
check fastnn's traced models and Keras-style Graphs against PyTorch without importing torch.

Run from the repository root: python tests/data/make_graph_reference.py

Everything is computed in float64. Weights, batch-norm statistics, inputs and upstream gradients are drawn
in float32 and widened, so they are exact in both precisions: the float64 results are then the exact answer
for the float32 test too, which measures fastnn's float32 rounding alone. Those exact-in-float32 arrays are
stored as float32 (lossless, half the size); results are float64.

Keys, per case:
  <case>/config                 JSON: {"model": kind, "kwargs": {...}, "num_inputs", "num_outputs",
                                "combos": {combo: [indices of the outputs that get a gradient]}}
  <case>/param/<name>           the state_dict before the forward (buffers included, PyTorch names)
  <case>/input/<k>              the k-th input (int64 for ids)
  <case>/out/<k>                the k-th output of one forward in training mode
  <case>/buffer_after/<name>    every buffer after that forward (running_mean, running_var, num_batches_tracked)
  <case>/grad_out/<k>           upstream gradient of output k
  <case>/<combo>/grad_in/<k>    gradient of float input k when only the combo's outputs get their gradient
  <case>/<combo>/grad/<name>    parameter gradients for that combo (zeros where unused)
"""
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


# -- the models (their fastnn twins live in tests/test_graph_torch.py, same attribute names) ---------------
class BasicBlock(nn.Module):
    """ResNet basic block with a strided 1x1 projection shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv(F.relu(self.bn(x)))


class DenseBlock(nn.Module):
    def __init__(self, cin, growth, layers):
        super().__init__()
        self.layers = nn.ModuleList([DenseLayer(cin + k * growth, growth) for k in range(layers)])

    def forward(self, x):
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return x


class W8(nn.Module):
    """DLRM-style: bottom MLP on dense features, one EmbeddingBag per id field, pairwise dot interaction."""

    def __init__(self, rows, fields=8, dim=16):
        super().__init__()
        self.fields = fields
        self.bot = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, dim), nn.ReLU())
        self.emb = nn.ModuleList([nn.EmbeddingBag(rows, dim, mode="mean") for _ in range(fields)])
        self.inter = nn.Identity()  # fastnn's Interaction(mode="dot") has no parameters
        n = fields + 1
        self.top = nn.Sequential(nn.Linear(dim + n * (n - 1) // 2, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, dense, ids):
        d = self.bot(dense)
        z = torch.stack([d] + [self.emb[k](ids[:, k]) for k in range(self.fields)], dim=1)
        i, j = torch.triu_indices(z.shape[1], z.shape[1], 1)
        inter = torch.bmm(z, z.transpose(1, 2))[:, i, j]
        return self.top(torch.cat([d, inter], dim=1))


class Recurrent(nn.Module):
    """Classifier over the final states h[-2], h[-1] (last layer, both directions) and the last time step
    of the output; an LSTM also reads its last cell state c[-1]."""

    def __init__(self, cell, input_size, hidden, batch_first):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = getattr(nn, cell)(input_size, hidden, num_layers=2, bidirectional=True, batch_first=batch_first)
        self.fc = nn.Linear(4 * hidden, 3)
        if cell == "LSTM":
            self.cfc = nn.Linear(hidden, 3)

    def forward(self, x):
        if isinstance(self.rnn, nn.LSTM):
            out, (h, c) = self.rnn(x)
        else:
            out, h = self.rnn(x)
            c = None
        last = out[:, -1] if self.batch_first else out[-1]
        y = self.fc(torch.cat([h[-2], h[-1], last], dim=1))
        return y if c is None else y + self.cfc(c[-1])


class Shared(nn.Module):
    """fc and bn are each used three times."""

    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)
        self.bn = nn.BatchNorm1d(n)
        self.out = nn.Linear(n, 2)

    def forward(self, x):
        h1 = torch.tanh(self.bn(self.fc(x)))
        h2 = torch.tanh(self.bn(self.fc(h1)))
        h3 = self.bn(self.fc(h2 * x))
        return self.out(h1 + h3)


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.head_a = nn.Linear(8, 3)
        self.head_b = nn.Linear(8, 2)

    def forward(self, x):
        h = F.relu(self.bn(self.trunk(x)))
        return self.head_a(h), torch.sigmoid(self.head_b(h)) + x[:, :2]


class TwoInTwoOut(nn.Module):
    """The PyTorch twin of the Keras-style Graph in the test: a (N, 6) and an image b (N, 2, 5, 5)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3)
        self.fa = nn.Linear(6, 8)
        self.fb = nn.Linear(27, 8)
        self.bn = nn.BatchNorm1d(16)
        self.head1 = nn.Linear(16, 3)
        self.head2 = nn.Linear(16, 1)

    def forward(self, a, b):
        hb = torch.flatten(F.relu(self.conv(b)), 1)
        z = torch.tanh(self.bn(torch.cat([self.fa(a), self.fb(hb)], dim=1)))
        return self.head1(z), self.head2(z) + a.mean(1, keepdim=True)


MODELS = {"basic_block": BasicBlock, "dense_block": DenseBlock, "w8": W8, "recurrent": Recurrent,
          "shared": Shared, "two_heads": TwoHeads, "two_in_two_out": TwoInTwoOut}
# Two outputs: both gradients given, and one of them None (PyTorch: only the other output is backpropagated).
FIRST_ONLY = {"both": [0, 1], "first": [0]}
SECOND_ONLY = {"both": [0, 1], "second": [1]}

# case -> (model kind, constructor kwargs, input shapes (("ids", shape, high) for int64), combos)
CASES = {
    "basic_block": ("basic_block", dict(cin=4, cout=6, stride=2), [(3, 4, 8, 8)], {"all": [0]}),
    "dense_block": ("dense_block", dict(cin=4, growth=3, layers=3), [(2, 4, 5, 5)], {"all": [0]}),
    "w8": ("w8", dict(rows=30), [(4, 13), ("ids", (4, 8, 4), 30)], {"all": [0]}),
    "lstm_batch_first": ("recurrent", dict(cell="LSTM", input_size=3, hidden=4, batch_first=True), [(3, 5, 3)],
                         {"all": [0]}),
    "lstm_seq_first": ("recurrent", dict(cell="LSTM", input_size=3, hidden=4, batch_first=False), [(5, 3, 3)],
                       {"all": [0]}),
    "gru_batch_first": ("recurrent", dict(cell="GRU", input_size=3, hidden=4, batch_first=True), [(3, 5, 3)],
                        {"all": [0]}),
    "gru_seq_first": ("recurrent", dict(cell="GRU", input_size=3, hidden=4, batch_first=False), [(5, 3, 3)],
                      {"all": [0]}),
    "shared": ("shared", dict(n=5), [(6, 5)], {"all": [0]}),
    "two_heads": ("two_heads", {}, [(5, 6)], FIRST_ONLY),
    "two_in_two_out": ("two_in_two_out", {}, [(4, 6), (4, 2, 5, 5)], SECOND_ONLY),
}


def f32(shape, scale=1.0):
    """Standard normal values rounded to float32, as float64."""
    return (torch.randn(*shape, dtype=torch.float32) * scale).double()


def randomise_batch_norm(model):
    """Batch-norm affine parameters and running statistics away from their defaults, exact in float32."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                n = m.num_features
                m.weight.copy_(1 + 0.3 * torch.randn(n, dtype=torch.float32))
                m.bias.copy_(0.3 * torch.randn(n, dtype=torch.float32))
                m.running_mean.copy_(0.5 * torch.randn(n, dtype=torch.float32))
                m.running_var.copy_(torch.rand(n, dtype=torch.float32) + 0.5)
                m.num_batches_tracked.fill_(3)


def store_exact(a):
    """Arrays exact in float32 are stored as float32."""
    a = a.detach().numpy().copy()  # state_dict tensors share memory with the model: later updates must not leak
    if a.dtype == np.float64:
        assert np.array_equal(a.astype(np.float32).astype(np.float64), a)
        return a.astype(np.float32)
    return a


def run_case(case, kind, kwargs, input_specs, combos, arrays):
    model = MODELS[kind](**kwargs)  # torch's init, in float32
    model.double().train()
    randomise_batch_norm(model)
    for name, t in model.state_dict().items():
        arrays[f"{case}/param/{name}"] = store_exact(t)
    inputs = []
    for k, spec in enumerate(input_specs):
        if spec[0] == "ids":
            t = torch.randint(0, spec[2], spec[1], dtype=torch.int64)
        else:
            t = f32(spec).requires_grad_(True)
        inputs.append(t)
        arrays[f"{case}/input/{k}"] = store_exact(t)
    outs = model(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for k, o in enumerate(outs):
        arrays[f"{case}/out/{k}"] = o.detach().numpy()
    for name, b in model.named_buffers():
        arrays[f"{case}/buffer_after/{name}"] = b.numpy().copy()
    grad_out = [f32(o.shape) for o in outs]
    for k, g in enumerate(grad_out):
        arrays[f"{case}/grad_out/{k}"] = store_exact(g)
    float_inputs = [t for t in inputs if t.is_floating_point()]
    params = list(model.named_parameters())
    for combo, which in combos.items():
        grads = torch.autograd.grad([outs[k] for k in which], float_inputs + [p for _, p in params],
                                    [grad_out[k] for k in which], retain_graph=True, allow_unused=True)
        float_k = [k for k, t in enumerate(inputs) if t.is_floating_point()]
        for k, g in zip(float_k, grads):
            arrays[f"{case}/{combo}/grad_in/{k}"] = (torch.zeros_like(inputs[k]) if g is None else g).detach().numpy()
        for (name, p), g in zip(params, grads[len(float_inputs):]):
            arrays[f"{case}/{combo}/grad/{name}"] = (torch.zeros_like(p) if g is None else g).numpy()
    arrays[f"{case}/config"] = np.array(json.dumps({"model": kind, "kwargs": kwargs, "num_inputs": len(inputs),
                                                    "num_outputs": len(outs), "combos": combos}))


def main():
    torch.manual_seed(0)
    out_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "graph_reference.npz")
    arrays = {}
    for case, (kind, kwargs, input_specs, combos) in CASES.items():
        run_case(case, kind, kwargs, input_specs, combos, arrays)
    np.savez_compressed(out_path, **arrays)
    print(f"wrote {out_path} ({os.path.getsize(out_path)} bytes, torch {torch.__version__})")


if __name__ == "__main__":
    main()
