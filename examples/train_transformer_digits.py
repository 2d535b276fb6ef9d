"""A Transformer encoder on digits read as row tokens
===================================================

Train a small Transformer encoder on scikit-learn's handwritten digits read as a sequence of 8 row tokens
(8 pixels each) and print test accuracy.

    rows (N, 8, 8) -> Linear(8, 64) + a learned positional Parameter (8, 64)
    -> 2 x TransformerEncoderLayer(64, 4, 128, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
    -> LayerNorm -> mean over tokens -> Linear(64, 10)

    python examples/train_transformer_digits.py
"""
import os
import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import fastnn as fnn
from fastnn import nn


class RowTransformer(nn.Module):
    def __init__(self, d_model=64, nhead=4, dim_feedforward=128, num_layers=2, dropout=0.1):
        super().__init__()
        self.embed = nn.Linear(8, d_model)
        self.pos = nn.Parameter(np.random.default_rng(0).normal(0.0, 0.02, (8, d_model)).astype(np.float32))
        layer = nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout=dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, norm=nn.LayerNorm(d_model))
        self.head = nn.Linear(d_model, 10)

    def forward(self, x):
        tokens = self.embed(x.reshape(-1, 8, 8)) + self.pos  # -1: any batch size, also once saved
        return self.head(self.encoder(tokens).mean(1))


def main(seed=0, epochs=60, verbose=1):
    fnn.manual_seed(seed)
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    X_train, X_test = (X_train / 16.0).astype(np.float32), (X_test / 16.0).astype(np.float32)

    model = RowTransformer()
    steps = epochs * -(-len(X_train) // 32)
    trainer = fnn.Trainer(model, loss=nn.CrossEntropyLoss(),
                          optimizer=fnn.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2),
                          schedule=fnn.schedules.CosineDecay(learning_rate=2e-3, decay_steps=steps, alpha=0.02),
                          metrics=["accuracy"])
    start = time.perf_counter()
    # All 1437 training images train; the 360 test images are only looked at once, at the end.
    trainer.fit(X_train, y_train, epochs=epochs, batch_size=32, verbose=verbose)
    elapsed = time.perf_counter() - start
    test = trainer.evaluate(X_test, y_test)
    if verbose:
        print(model.summary(input_shape=(64,)))
        print(f"trained in {elapsed:.1f} s; test loss {test['loss']:.4f}, test accuracy {test['accuracy']:.4f}")
    return model, test


if __name__ == "__main__":
    # The documentation build sets FASTNN_DOCS_QUICK=1: a few epochs only, so its accuracy is lower.
    main(epochs=3 if os.environ.get("FASTNN_DOCS_QUICK") == "1" else 60)
