"""A traced residual CNN with augmentation
=======================================

Train a small residual CNN on scikit-learn's handwritten digits with augmentation; print test accuracy.

The model is a Module subclass that writes no backward: its forward (convolutions, batch norm, `+` for the
skip connections) is traced into a graph and backward comes from it. Batches come from
fastnn.data.ArrayBatches with a random shift and rotation applied to every training batch.

    python examples/train_resnet_digits.py
"""
import os
import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn

F = fnn.nn.functional


class BasicBlock(fnn.nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the input (or a 1×1 projection when the shape changes), then ReLU."""

    def __init__(self, cin, cout, stride=1):
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


class ResNetDigits(fnn.nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        nn = fnn.nn
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 32, stride=2), BasicBlock(32, 32))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):                       # x (N, 1, 8, 8)
        h = self.blocks(self.stem(x))           # (N, 32, 4, 4)
        return self.fc(self.dropout(F.flatten(self.pool(h), 1)))


def main(seed=0, epochs=30, verbose=1):
    fnn.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_train = (X_train / 16.0).reshape(-1, 1, 8, 8).astype("float32")   # pixels 0..16 -> [0, 1]
    X_test = (X_test / 16.0).reshape(-1, 1, 8, 8).astype("float32")

    augment = fnn.data.transforms.Compose([fnn.data.transforms.RandomShift(max_shift=0.125),
                                           fnn.data.transforms.RandomRotation(degrees=10.0)])
    train = fnn.data.ArrayBatches(X_train, y_train, batch_size=32, shuffle=True, transform=augment)
    model = ResNetDigits()
    steps = epochs * len(train)
    trainer = fnn.Trainer(model, loss=fnn.nn.CrossEntropyLoss(),
                          optimizer=fnn.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4),
                          schedule=fnn.schedules.CosineDecay(learning_rate=3e-3, decay_steps=steps, alpha=0.01),
                          metrics=["accuracy"])
    start = time.perf_counter()
    trainer.fit(train, epochs=epochs, verbose=verbose)   # the 360 test images are only seen at the end
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(X_test, y_test)
    if verbose:
        print(model.summary(input_shape=(1, 8, 8)))
        print(f"trained in {elapsed:.1f} s; test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
    return model, test


if __name__ == "__main__":
    # The documentation build sets FASTNN_DOCS_QUICK=1: a few epochs only, so its accuracy is lower.
    main(epochs=1 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 30)
