"""Graph models against PyTorch 2.13 in the same run, 2 threads (issue 10): ms per training step, SGD lr 0.01
momentum 0.9, cross-entropy, random data, fixed seed, the same weights in both libraries.
  W7  ResNet-8 on 3×32×32, batch 32: stem Conv(3→16)-BN-ReLU; basic blocks 16→16, 16→32 (stride 2), 32→64
      (stride 2), each conv3×3-BN-ReLU-conv3×3-BN plus the input or a 1×1 strided conv + BN projection, then
      ReLU; AdaptiveAvgPool2d(1), Flatten, Linear(64→10). A Module subclass with no backward (traced).
                                                              (target <= 0.6x PyTorch: issue 14; 0.8 in issue 10)
  W8  DLRM-like, batch 256: dense (B, 13) → Linear(13,64)-ReLU-Linear(64,16)-ReLU; ids (B, 8, 4) → 8 ×
      EmbeddingBag(1000, 16, mean); the 9 vectors stacked (B, 9, 16), Interaction(mode="dot") (36 pairwise
      dots), concatenated with the dense vector → Linear(52,64)-ReLU-Linear(64,10). Two inputs.
                                                                                    (target <= 0.8x PyTorch)
Run: python bench/bench_graph.py [--threads 2] [--repeats 15]
"""
import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # numpy is not timed; keep its pool off the cores

import numpy as np
import torch

import fastnn as fnn
from common import classifier_training_steps, interleaved, report, warm_up

F = fnn.nn.functional


# -- W7: ResNet-8 -----------------------------------------------------------------------------------------
class BasicBlock(fnn.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        nn = fnn.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class ResNet8(fnn.nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        nn = fnn.nn
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.flatten(self.pool(x), 1))


class TorchBasicBlock(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        nn = torch.nn
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class TorchResNet8(torch.nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        nn = torch.nn
        self.conv = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.layer1 = TorchBasicBlock(16, 16, 1)
        self.layer2 = TorchBasicBlock(16, 32, 2)
        self.layer3 = TorchBasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


# -- W8: DLRM-like ------------------------------------------------------------------------------------------
class DLRM(fnn.nn.Module):
    def __init__(self, tables=8, rows=1000, dim=16, classes=10):
        super().__init__()
        nn = fnn.nn
        self.bottom = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, dim), nn.ReLU())
        self.embeddings = nn.ModuleList([nn.EmbeddingBag(rows, dim, mode="mean") for _ in range(tables)])
        self.interaction = nn.Interaction(mode="dot")
        pairs = (tables + 1) * tables // 2
        self.top = nn.Sequential(nn.Linear(dim + pairs, 64), nn.ReLU(), nn.Linear(64, classes))

    def forward(self, dense, ids):
        d = self.bottom(dense)
        fields = [d] + [bag(ids[:, k]) for k, bag in enumerate(self.embeddings)]
        z = self.interaction(F.stack(fields, dim=1))
        return self.top(F.cat([d, z], dim=1))


class TorchDLRM(torch.nn.Module):
    def __init__(self, tables=8, rows=1000, dim=16, classes=10):
        super().__init__()
        nn = torch.nn
        self.bottom = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, dim), nn.ReLU())
        self.embeddings = nn.ModuleList([nn.EmbeddingBag(rows, dim, mode="mean") for _ in range(tables)])
        pairs = (tables + 1) * tables // 2
        self.top = nn.Sequential(nn.Linear(dim + pairs, 64), nn.ReLU(), nn.Linear(64, classes))
        self.register_buffer("pairs", torch.triu_indices(tables + 1, tables + 1, 1), persistent=False)

    def forward(self, dense, ids):
        d = self.bottom(dense)
        fields = [d] + [bag(ids[:, k]) for k, bag in enumerate(self.embeddings)]
        z = torch.stack(fields, dim=1)
        dots = torch.bmm(z, z.transpose(1, 2))[:, self.pairs[0], self.pairs[1]]
        return self.top(torch.cat([d, dots], dim=1))


def same_weights(model, tmodel):
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    fnn.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"fastnn {fnn.__version__}, torch {torch.__version__}, {args.threads} threads; "
          f"ms per training step, median of {args.repeats} interleaved blocks")

    fnn.manual_seed(0)
    model, tmodel = ResNet8(), TorchResNet8()
    same_weights(model, tmodel)
    x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    steps = classifier_training_steps(model, tmodel, x, y)
    warm_up(steps, 3)
    report("W7 ResNet-8 3x32x32, batch 32, train step", "ms", 1e3, interleaved(steps, 5, args.repeats), 0.6)

    fnn.manual_seed(0)
    model, tmodel = DLRM(), TorchDLRM()
    same_weights(model, tmodel)
    dense = rng.standard_normal((256, 13)).astype(np.float32)
    ids = rng.integers(0, 1000, (256, 8, 4))
    y = rng.integers(0, 10, 256)
    steps = classifier_training_steps(model, tmodel, (dense, ids), y)
    warm_up(steps, 10)
    report("W8 DLRM-like, batch 256, train step", "ms", 1e3, interleaved(steps, 50, args.repeats), 0.8)


if __name__ == "__main__":
    main()
