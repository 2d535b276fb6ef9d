"""Writes the ONNX fixtures of tests/test_onnx_load.py with torch.onnx.export(..., dynamo=False) (torch 2.13),
and torch's outputs on a fixed input (<name>.npz: x, y). Run once: python tests/data/onnx/make_onnx_fixtures.py"""
import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(6)
        self.avg = nn.AvgPool2d(2)
        self.fc = nn.Linear(6 * 2 * 2, 5)

    def forward(self, x):
        h = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = self.avg(torch.relu(self.bn2(self.conv2(h))))
        h = h.reshape(h.shape[0], -1)
        return torch.log_softmax(self.fc(h), dim=1)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 16), nn.Sigmoid(),
                                 nn.Linear(16, 3))

    def forward(self, x):
        return self.net(x)


class LSTMClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 6, batch_first=True)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.fc(h[-1])


class GeluNet(nn.Module):
    """Opset 20: GELU as the Gelu op, AdaptiveAvgPool2d(1) as GlobalAveragePool, flatten as Flatten."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, padding=1)
        self.act = nn.GELU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return torch.softmax(self.fc(torch.flatten(self.pool(self.act(self.conv(x))), 1)), dim=-1)


def make(name, model, x, dynamic, training=torch.onnx.TrainingMode.EVAL, opset=17):
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():  # running statistics away from 0 and 1
        for _ in range(3):
            model(torch.randn_like(x) * 2 + 0.5)
    model.eval()
    with torch.no_grad():
        y = model(x)
    path = os.path.join(HERE, name + ".onnx")
    torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": dynamic, "y": {0: "batch"}}, training=training)
    np.savez(os.path.join(HERE, name + ".npz"), x=x.numpy(), y=y.numpy())
    print(name, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    torch.manual_seed(0)
    # PRESERVE (the model is in eval mode) keeps BatchNormalization instead of folding it into the convolutions
    make("cnn_bn", CNN(), torch.randn(3, 1, 8, 8), {0: "batch"}, torch.onnx.TrainingMode.PRESERVE)
    make("mlp", MLP(), torch.randn(4, 8), {0: "batch"})
    make("lstm_classifier", LSTMClassifier(), torch.randn(3, 5, 4), {0: "batch", 1: "seq"})
    make("gelu_net_opset20", GeluNet(), torch.randn(3, 2, 5, 5), {0: "batch"}, opset=20)
    # opset 17 has no Gelu op: torch writes x/√2 -> Erf -> +1 -> ·x -> ·½
    make("gelu_net_opset17", GeluNet(), torch.randn(3, 2, 5, 5), {0: "batch"}, opset=17)
